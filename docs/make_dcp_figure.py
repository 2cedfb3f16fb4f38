"""Before/after figure of Dark Channel Prior dehazing on real hazy photographs.

Usage (from the repository root)::

    PYTHONPATH=src python docs/make_dcp_figure.py

Reads a few images from ``../shared/data/haze/real/`` (relative to the
repository root), resizes them to 256 px high, dehazes them with
:class:`napari_nlcl.classical.dcp.DarkChannelPrior` (default settings unless
overridden on the command line) and writes ``docs/images/dcp_real_haze.png``:
one row per image, columns *hazy | DCP*.  Only numpy, Pillow and torch are
used (no matplotlib).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "haze" / "real"
OUT = ROOT / "docs" / "images" / "dcp_real_haze.png"

#: Photographs shown, chosen to cover sky, distant scenery, dense fog and a
#: city: the classic DCP test images plus a few from the UTK set.
IMAGES = [
    "canyon.png",
    "test.png",
    "test10.jpg",
    "utk_y01_photo.png",
    "utk_foggy_bench.jpg",
    "test15.jpg",
]
HEIGHT = 256
GAP = 8
LABEL_H = 22

try:
    from napari_nlcl.classical.dcp import DarkChannelPrior
except ImportError:  # running without PYTHONPATH=src
    sys.path.insert(0, str(ROOT / "src"))
    from napari_nlcl.classical.dcp import DarkChannelPrior


def load(path: Path, height: int = HEIGHT) -> np.ndarray:
    """RGB float image in [0, 1], resized to ``height`` rows."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w = max(1, round(im.width * height / im.height))
    im = im.resize((w, height), Image.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


def dehaze(model, img: np.ndarray) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        y = model(x)
    return y[0].numpy().transpose(1, 2, 0)


def label(text: str, width: int) -> np.ndarray:
    """A white strip with black text (PIL's default bitmap font)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, LABEL_H), "white")
    ImageDraw.Draw(strip).text((4, 5), text, fill="black")
    return np.asarray(strip, dtype=np.float32) / 255.0


def grid(rows: list[tuple[np.ndarray, ...]], titles: tuple[str, ...]) -> np.ndarray:
    """Rows of same-height images under one title per column."""
    width = max(a.shape[1] for row in rows for a in row)
    cell_h = max(a.shape[0] for row in rows for a in row)
    h = LABEL_H + len(rows) * (cell_h + GAP)
    w = len(titles) * (width + GAP) + GAP
    canvas = np.ones((h, w, 3), np.float32)
    for j, title in enumerate(titles):
        x0 = GAP + j * (width + GAP)
        canvas[:LABEL_H, x0 : x0 + width] = label(title, width)
    for i, pair in enumerate(rows):
        y0 = LABEL_H + i * (cell_h + GAP)
        for j, img in enumerate(pair):
            x0 = GAP + j * (width + GAP) + (width - img.shape[1]) // 2
            canvas[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="folder of hazy images")
    parser.add_argument("--out", type=Path, default=OUT, help="output PNG")
    parser.add_argument("--images", nargs="+", default=IMAGES, help="file names inside --data")
    for name, typ in (("patch", int), ("omega", float), ("t0", float), ("radius", int), ("eps", float)):
        parser.add_argument(f"--{name}", type=typ, default=None, help=f"override the default {name}")
    args = parser.parse_args(argv)

    if not args.data.is_dir():
        print(
            f"error: hazy images not found in {args.data}\n"
            "       expected the shared data set at ../shared/data/haze/real relative to the repository root",
            file=sys.stderr,
        )
        return 1
    paths = [args.data / n for n in args.images if (args.data / n).is_file()]
    missing = [n for n in args.images if not (args.data / n).is_file()]
    if missing:
        print(f"warning: skipping missing images: {', '.join(missing)}", file=sys.stderr)
    if not paths:
        print(f"error: none of {args.images} found in {args.data}", file=sys.stderr)
        return 1

    overrides = {k: getattr(args, k) for k in ("patch", "omega", "t0", "radius", "eps") if getattr(args, k) is not None}
    model = DarkChannelPrior(**overrides).eval()
    rows = []
    for p in paths:
        hazy = load(p)
        rows.append((hazy, dehaze(model, hazy)))
        print(f"{p.name}: {hazy.shape[1]}x{hazy.shape[0]}")
    c = model.info.config
    cfg = f"patch={c['patch']} omega={c['omega']} t0={c['t0']} r={c['radius']} eps={c['eps']:g}"
    save_png(grid(rows, ("hazy input", f"DCP: {cfg}")), args.out)
    return 0


def save_png(canvas: np.ndarray, out: Path) -> None:
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
