"""A pair folder made grey: BT.601 luma of every image, written on three equal channels.

    python benchmarks/make_grey_pairs.py ../shared/data/rain/synthetic_val_sirr runs/data/sirr_grey

Reads ``SRC/rain/inputN.png`` and ``SRC/norain/norainN.png`` and writes the same names under
``OUT``, for ``score_model.py --pairs OUT`` (how the derainer does on grey scenes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(src: Path, out: Path) -> int:
    from napari_nlcl.io import read_file, write_image

    n = 0
    for sub in ("rain", "norain"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / sub).glob("*.png")):
            rgb = np.asarray(read_file(f))[..., :3].astype(np.float64)
            grey = np.round(rgb @ [0.299, 0.587, 0.114]).clip(0, 255).astype(np.uint8)
            write_image(out / sub / f.name, np.repeat(grey[..., None], 3, -1))
            n += 1
    print(out, n // 2, "pairs")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    raise SystemExit(main(a.src, a.out))
