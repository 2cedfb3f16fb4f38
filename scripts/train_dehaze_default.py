"""Train the shipped default dehazer (AECR-Net "physics" preset) on synthetic haze.

Clear photos: every folder of ``../shared/data/clean`` except ``kodak``, which
is held out as the validation set (``benchmarks/bench_dehaze.py``).  Haze is
synthesised on every crop (``DehazeConfig(mode="synthetic")``).

    python scripts/train_dehaze_default.py --steps 6000 -o runs/dehaze.pt
    python scripts/train_dehaze_default.py --resume runs/dehaze.pt --steps 6000  # after a stop
    python scripts/train_dehaze_default.py --airlight-stage runs/dehaze.pt --steps 3000  # stage 2
    python scripts/train_dehaze_default.py --export runs/dehaze.pt          # -> package weights
    python scripts/train_dehaze_default.py --from default --steps 6000 --lr 2e-4 \
        --recipe-json '{"scene_depth": 0.5}' -o runs/dehaze_scene.pt       # continue a model

Stage 2 (``--airlight-stage``) trains only the airlight branch of a physics-output
model, on thumbnails of whole photos hazed as whole photos (the view it gets at
inference, where the engine shows it the whole plane), and writes the result
back into the checkpoint atomically.

Logs one line every 50 steps; a checkpoint every 250 steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from _training_log import fit_branch, run_logged

from napari_nlcl.io import list_images, read_file
from napari_nlcl.nets.aecr import DEFAULT_WEIGHTS
from napari_nlcl.registry import DEHAZE_T_MIN
from napari_nlcl.training import TrainConfig, Trainer, export_model
from napari_nlcl.training.data import RandomCrops

CLEAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clean"
VALIDATION = ("kodak",)


def training_images(root: Path) -> list[np.ndarray]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in VALIDATION)
    images = []
    for folder in folders:
        for f in list_images(folder):
            im = np.asarray(read_file(f))
            if im.ndim == 3 and im.shape[-1] >= 3 and min(im.shape[:2]) >= 128:
                images.append(np.ascontiguousarray(im[..., :3]))
    print(f"{len(images)} training photos from {[p.name for p in folders]}", flush=True)
    return images


def train_airlight(path: Path, images: list[np.ndarray], steps: int, *, lr: float = 1e-3,
                   batch_size: int = 32, seed: int = 0) -> None:
    """Stage 2: the airlight branch alone, on 64-px views of whole hazed photos.

    The loss is the airlight's L1 error weighted per image by the mean of
    ``1/t - 1``, the factor by which an airlight error moves the dehazed
    pixels (``J = (I - A)/t + A``): light haze barely shows its airlight and
    barely needs it, dense haze shows it and needs it.
    """
    import time

    from napari_nlcl import synth
    from napari_nlcl.modelfile import save_checkpoint
    from napari_nlcl.nets.aecr_blocks import thumbnail
    from napari_nlcl.training import load_recipe

    recipe, payload = load_recipe(path)
    branch = recipe.net.airlight
    if branch is None:
        raise SystemExit(f"{path} has no airlight branch (not a physics-output model)")
    size = branch.size
    thumbs = [thumbnail(torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255, size)[0] for im in images]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    def batch():
        xs, airs, weights = [], [], []
        for _ in range(batch_size):
            th = thumbs[rng.integers(len(thumbs))]
            _, h, w = th.shape
            # haze over the whole photo (the validation set's generator, with its shape varied), then a crop
            p = synth.random_haze_params(rng)
            d = synth.random_depth((h, w), rng=rng, ramp=rng.uniform(0.4, 0.9), smoothness=rng.uniform(0.1, 0.3))
            t = torch.from_numpy(np.exp(-p["beta"] * d)).float()[None]
            a = torch.tensor(p["airlight"], dtype=torch.float32)
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            hz = (th * t + a[:, None, None] * (1 - t)).clamp(0, 1)[:, y:y + size, x:x + size]
            xs.append(hz.flip(-1) if rng.random() < 0.5 else hz)
            airs.append(a)
            # an airlight error e moves the dehazed pixel by e * (1/t - 1): weigh each image by that
            weights.append((1.0 / t[:, y:y + size, x:x + size].clamp(min=0.05) - 1.0).mean())
        return torch.stack(xs), torch.stack(airs), torch.stack(weights)

    def loss_at(step: int) -> torch.Tensor:
        x, a, w = batch()
        return ((branch(x) - a).abs().mean(1) * w).sum() / w.sum()

    branch.train()
    started = fit_branch(branch.parameters(), loss_at, steps, lr, stage="airlight", every=250,
                         report=lambda err: {"airlight": round(err, 4)})
    net_state = dict(payload["networks"]["net"])
    for k, v in branch.state_dict().items():
        net_state[f"airlight.{k}"] = v.detach().clone()
    payload["networks"] = {**payload["networks"], "net": net_state}
    meta = json.loads(payload.get("metadata", "{}") or "{}")
    meta["airlight_stage"] = {"steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
                              "command": " ".join(sys.argv)}
    payload["metadata"] = json.dumps(meta)
    save_checkpoint(path, payload)
    print(f"airlight branch trained in {(time.perf_counter() - started) / 60:.1f} min -> {path}", flush=True)


def export_default(src: Path, t_min: float) -> None:
    """Weights-only copy into the package, with the inference floor of the transmission stored.

    Training uses a low floor (``AECRConfig.t_min``, 0.05) so that dense synthetic
    haze is learnt; the shipped model stores the floor chosen for inference
    (``registry.DEHAZE_T_MIN``, see the README), which changes no weight.
    """
    from napari_nlcl.modelfile import read_checkpoint, save_checkpoint

    export_model(src, DEFAULT_WEIGHTS)
    payload = read_checkpoint(DEFAULT_WEIGHTS)
    config = json.loads(payload["config"])
    net = config["recipe"].setdefault("net", {})
    if config["recipe"].get("preset") == "physics" or net.get("output") == "physics":
        net["t_min"] = float(t_min)
    payload["config"] = json.dumps(config)
    save_checkpoint(DEFAULT_WEIGHTS, payload)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="runs/dehaze_default.pt")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--zoom", default="0.25,1",
                    help="crop zoom range: a crop covers crop/zoom px, so zoomed-out crops look like whole photos")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--cr-weight", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe-json", default="{}", help='more recipe settings, e.g. \'{"net": {"head": "residual"}}\'')
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clean", type=Path, default=CLEAN)
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--from", dest="start", help="a new run starting from this model ('default': the shipped one)")
    ap.add_argument("--export", type=Path, help="copy the weights of this checkpoint into the package")
    ap.add_argument("--t-min", type=float, default=DEHAZE_T_MIN,
                    help="transmission floor stored in the exported model (default: %(default)s)")
    ap.add_argument("--airlight-stage", type=Path, metavar="CKPT",
                    help="stage 2: train this checkpoint's airlight branch on whole-photo thumbnails (--steps)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export:
        export_default(args.export, args.t_min)
        print(f"exported {args.export} -> {DEFAULT_WEIGHTS} ({DEFAULT_WEIGHTS.stat().st_size / 1e6:.2f} MB), "
              f"t_min {args.t_min}")
        return 0
    if args.airlight_stage:
        train_airlight(args.airlight_stage, training_images(args.clean), args.steps, seed=args.seed)
        return 0
    zoom = tuple(float(v) for v in args.zoom.split(","))
    crops = RandomCrops({"clear": training_images(args.clean)}, crop=args.crop,
                        batch_size=args.batch_size, seed=args.seed, zoom=zoom)
    if args.resume:
        trainer = Trainer.resume(args.resume, crops, steps=args.steps)
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                             seed=args.seed, schedule="cosine", decay_start=0.2, checkpoint_every=250)
        recipe_config = {"mode": "synthetic", "cr_weight": args.cr_weight, **json.loads(args.recipe_json)}
        kwargs = {"recipe_config": recipe_config, "checkpoint": out, "metadata": {"command": " ".join(sys.argv)}}
        if args.start:
            start = DEFAULT_WEIGHTS if args.start == "default" else Path(args.start)
            trainer = Trainer.from_model(start, crops, config, **kwargs)
        else:
            trainer = Trainer.from_recipe_name("dehaze", crops, config, **kwargs)
    run_logged(trainer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
