"""Make the offline encoder's weights: ``src/napari_nlcl/weights/tiny_encoder.pt``.

The :class:`napari_nlcl.contrastive.encoders.TinyEncoder` (5 blocks, 3x3
convolutions, 16-32-64-96-128 channels) gets its weights without network and
without training, in a few seconds on one CPU core:

1. ``conv1_1``: the 8 leading principal components of the 3x3 RGB patches of
   the calibration crops (ImageNet-normalised, as the encoder sees them), each
   with both signs -> 16 luminance / colour-opponent / oriented-derivative
   filters.
2. ``conv2_1 .. conv5_1``: seeded orthogonal random weights
   (``TinyEncoder(weights=None, seed=seed)``).
3. Data-dependent calibration, layer by layer: each output channel is scaled
   to unit standard deviation and shifted to zero mean (pre-activation) over
   the calibration crops.

The calibration crops are random 64x64 crops (``numpy.random.default_rng(seed)``)
of twelve PNG images bundled with scikit-image: photographs (astronaut,
coffee, chelsea, colorwheel, camera), microscopy (immunohistochemistry,
cell), textures (brick, grass, gravel) and others (moon, coins).  PNGs only:
JPEG decoders differ between library versions, PNG decoding is exact.
Everything is computed in float64 and rounded to float32 at the end, so the
file is the same bit for bit wherever it is rebuilt (with the same
scikit-image images); the script prints its SHA-256, which the package
records as ``TINY_WEIGHTS_SHA256``.

Usage::

    python scripts/make_offline_encoder.py            # write the package file
    python scripts/make_offline_encoder.py --check    # rebuild in memory, compare
    python scripts/make_offline_encoder.py --out other.pt --seed 1
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_nlcl.contrastive.encoders import TINY_WEIGHTS_FILE, TinyEncoder

CALIBRATION_IMAGES = (
    "astronaut", "coffee", "chelsea", "colorwheel", "camera", "immunohistochemistry",
    "cell", "brick", "grass", "gravel", "moon", "coins",
)  # fmt: skip
CROP = 64
CROPS_PER_IMAGE = 8
PCA_COMPONENTS = 8  # x 2 signs = the 16 filters of conv1_1

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "napari_nlcl" / "weights" / TINY_WEIGHTS_FILE


def _as_rgb_float(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float64) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float64) / 65535.0
    else:
        img = img.astype(np.float64)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3]


def calibration_batch(seed: int = 0) -> torch.Tensor:
    """``(N, 3, CROP, CROP)`` float64 crops in ``[0, 1]`` from scikit-image's bundled images."""
    from skimage import data

    rng = np.random.default_rng(seed)
    crops = []
    for name in CALIBRATION_IMAGES:
        img = _as_rgb_float(getattr(data, name)())
        h, w = img.shape[:2]
        for _ in range(CROPS_PER_IMAGE):
            top = int(rng.integers(0, h - CROP + 1))
            left = int(rng.integers(0, w - CROP + 1))
            crops.append(img[top : top + CROP, left : left + CROP])
    batch = np.stack(crops).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(batch))


def _pca_filters(xn: torch.Tensor, n: int) -> torch.Tensor:
    """``(2n, C, 3, 3)``: the n leading principal components of 3x3 patches, +/- each."""
    c = xn.shape[1]
    d = c * 9
    total = torch.zeros(d, dtype=torch.float64)
    outer = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    for chunk in xn.split(16):  # a few crops at a time keeps memory small
        cols = F.unfold(chunk, 3).transpose(0, 1).reshape(d, -1)  # (d, L)
        total += cols.sum(1)
        outer += cols @ cols.T
        count += cols.shape[1]
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    comps = vecs[:, -n:].flip(1).T  # (n, d), leading first
    # fix the sign of each component: its largest-magnitude entry is positive
    idx = comps.abs().argmax(1)
    comps = comps * torch.sign(comps[torch.arange(n), idx])[:, None]
    filters = torch.stack([comps, -comps], 1).reshape(2 * n, c, 3, 3)
    return filters


def make_state_dict(seed: int = 0, *, verbose: bool = False) -> dict[str, torch.Tensor]:
    """Build the TinyEncoder weights (float32 state dict) from ``seed``."""
    enc = TinyEncoder(("relu5_1",), weights=None, seed=seed).double()
    x = calibration_batch(seed)
    h = (x - enc.mean) / enc.std
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        convs[0].weight.copy_(_pca_filters(h, PCA_COMPONENTS))
        convs[0].bias.zero_()
        for i, module in enumerate(enc.features):
            if isinstance(module, torch.nn.Conv2d):
                z = module(h)
                mean = z.mean((0, 2, 3))
                std = z.std((0, 2, 3)).clamp_min(1e-8)
                module.weight.div_(std[:, None, None, None])
                module.bias.sub_(mean).div_(std)
                # = module(h) with the calibrated weights, without a second convolution
                h = (z - mean[:, None, None]) / std[:, None, None]
            else:
                h = module(h)
            if verbose and isinstance(module, torch.nn.ReLU):
                name = enc_layer_name(i)
                active = (h > 0).double().mean((0, 2, 3))
                print(
                    f"  {name:8s} {tuple(h.shape[1:])!s:16s} active fraction "
                    f"{active.mean():.2f} (min {active.min():.2f})  mean {h.mean():.3f}"
                )
    return {k: v.detach().to(torch.float32).contiguous() for k, v in enc.state_dict().items()}


def enc_layer_name(index: int) -> str:
    from napari_nlcl.contrastive.encoders import TINY_CFG, trunk_layout

    return trunk_layout(TINY_CFG)[index]["name"]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check", action="store_true",
        help="rebuild in memory and compare with --out instead of writing it",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    print(f"calibrating TinyEncoder (seed {args.seed}) on {len(CALIBRATION_IMAGES)} images ...")
    state = make_state_dict(args.seed, verbose=True)
    n_params = sum(v.numel() for v in state.values())
    if args.check:
        from napari_nlcl.contrastive.encoders import read_weights_file

        saved = read_weights_file(args.out)
        same = set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in state)
        close = set(saved) == set(state) and all(
            torch.allclose(saved[k], state[k], rtol=1e-5, atol=1e-6) for k in state
        )
        print(f"{args.out}: {'identical' if same else 'close' if close else 'DIFFERENT'}")
        return 0 if close else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    # it must load back with the safe loader
    torch.load(args.out, map_location="cpu", weights_only=True)
    print(f"wrote {args.out}")
    print(f"  parameters: {n_params}   size: {args.out.stat().st_size} bytes")
    print(f"  SHA-256: {sha256_file(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
