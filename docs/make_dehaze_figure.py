"""Before/after figure of dehazing on real hazy photographs: input | DCP | default model.

Usage (from the repository root)::

    python docs/make_dehaze_figure.py                 # -> docs/images/dehaze_real_haze.png
    python docs/make_dehaze_figure.py --model my.pt   # a fine-tuned model instead of the default

Six photos from ``../shared/data/haze/real/`` (the research data is read
there, never copied), resized to 256 px high.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dcp_figure import DATA, IMAGES, ROOT, grid, load, save_png  # noqa: E402

OUT = ROOT / "docs" / "images" / "dehaze_real_haze.png"


def main(argv: list[str] | None = None) -> int:
    import napari_nlcl

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--images", nargs="+", default=IMAGES)
    ap.add_argument("--model", default="default", help="'default' or a model file")
    args = ap.parse_args(argv)
    paths = [args.data / n for n in args.images if (args.data / n).is_file()]
    if not paths:
        print(f"error: none of {args.images} found in {args.data}", file=sys.stderr)
        return 1
    rows = []
    for p in paths:
        hazy = load(p)
        dcp = napari_nlcl.dehaze(hazy, model="dcp", device="cpu")
        net = napari_nlcl.dehaze(hazy, model=args.model, device="cpu")
        rows.append((hazy, dcp, net))
        print(p.name)
    name = "default model (AECR-Net physics)" if args.model == "default" else Path(args.model).name
    save_png(grid(rows, ("hazy input", "Dark Channel Prior", name)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
