"""Before/after figure of deraining on real rainy photographs: input | baseline | default model.

Usage (from the repository root)::

    python docs/make_derain_figure.py                 # -> docs/images/derain_real_rain.png
    python docs/make_derain_figure.py --model my.pt   # a fine-tuned model instead of the default

Six photos from ``../shared/data/rain/real_sirr/real_input`` (the research
data is read there, never copied), resized to 320 px high.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dcp_figure import ROOT, grid, load, save_png

DATA = ROOT.parent / "shared" / "data" / "rain" / "real_sirr" / "real_input"
IMAGES = ["8.jpg", "10.jpg", "17.jpg", "18.jpg", "40.jpg", "43.jpg"]
OUT = ROOT / "docs" / "images" / "derain_real_rain.png"


def main(argv: list[str] | None = None) -> int:
    import napari_nlcl

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--images", nargs="+", default=IMAGES)
    ap.add_argument("--model", default="default", help="'default' or a model file")
    ap.add_argument("--height", type=int, default=320)
    args = ap.parse_args(argv)
    paths = [args.data / n for n in args.images if (args.data / n).is_file()]
    if not paths:
        print(f"error: none of {args.images} found in {args.data}", file=sys.stderr)
        return 1
    rows = []
    for p in paths:
        rainy = load(p, args.height)
        base = napari_nlcl.derain(rainy, model="directional", device="cpu")
        net = napari_nlcl.derain(rainy, model=args.model, device="cpu")
        rows.append((rainy, base, net))
        print(p.name)
    name = "default model (NLCL U-Net)" if args.model == "default" else Path(args.model).name
    save_png(grid(rows, ("rainy input", "directional baseline", name)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
