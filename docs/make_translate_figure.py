"""Qualitative translation results: film look (benchmark), Monet to photo (single image), cat to dog.

Train the models first (commands in the README, section *Translation*), then::

    python docs/make_translate_figure.py --film runs/translate/bench_cut.pt \\
        --monet runs/translate/monet_single.pt --afhq runs/translate/cat2dog.pt
    # -> docs/images/translate_results.png

Rows: three held-out Kodak photos (input | translation | the hidden film look
the model had to discover), the Monet painting of Etretat translated with the
single-image model (painting | translation | the one photo it saw), and three
held-out cats (``afhq/src/cat``; the model saw ``afhq/ref``).  The research
data is read from ``../shared/data``, never copied.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dcp_figure import ROOT, grid, load, save_png

DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "images" / "translate_results.png"


def main(argv: list[str] | None = None) -> int:
    import napari_nlcl
    from napari_nlcl.io import list_images
    from napari_nlcl.synth import film_look

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--film", type=Path, help="model trained by benchmarks/bench_translate.py")
    ap.add_argument("--monet", type=Path, help="single-image model (Monet painting -> photo)")
    ap.add_argument("--afhq", type=Path, help="cat -> dog model")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    def run(model: Path, image: np.ndarray) -> np.ndarray:
        return napari_nlcl.translate(image, str(model), device="cpu")

    rows = []
    if args.film:
        for f in list_images(DATA / "clean" / "kodak")[:3]:
            a = load(f, args.height)
            rows.append((a, run(args.film, a), film_look(a)))
    if args.monet:
        painting = load(DATA / "translate" / "monet_etretat" / "trainA" / "monet.jpg", args.height)
        photo = load(DATA / "translate" / "monet_etretat" / "trainB" / "etretat-normandy-france.jpg", args.height)
        rows.append((painting, run(args.monet, painting), photo))
    if args.afhq:
        dogs = list_images(DATA / "translate" / "afhq" / "ref" / "dog")
        for i, f in enumerate(list_images(DATA / "translate" / "afhq" / "src" / "cat")[:3]):
            cat = load(f, args.height)
            rows.append((cat, run(args.afhq, cat), load(dogs[i], args.height)))
    if not rows:
        print("give at least one of --film, --monet, --afhq", file=sys.stderr)
        return 1
    save_png(grid(rows, ("input (domain A)", "translation (A to B)", "domain B (film: the exact target)")),
             args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
