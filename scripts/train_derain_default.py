"""Train the shipped default derainer (NLCL, U-Net "fast" generators) in two stages.

Stage 1, ``--stage synthetic``: supervised warm start.  Rain is synthesised
on every clean crop (``DerainConfig(mode="synthetic")``) from the photos of
``../shared/data/clean`` except ``kodak``, which is held out (the dehazer's
validation set; ``synthetic_val_sirr`` is used for the final figures only).

Stage 2, ``--stage nlcl --from STAGE1``: unsupervised NLCL on the real rainy
photos of ``../shared/data/rain/real_sirr`` with the clean photos as the
discriminator's unpaired real set, keeping the synthetic-rain L1 term
(``sup_weight``) so the background generator cannot drift.

    python scripts/train_derain_default.py --stage synthetic --steps 6000 -o runs/derain_syn.pt
    python scripts/train_derain_default.py --resume runs/derain_syn.pt --steps 6000  # after a stop
    python scripts/train_derain_default.py --stage nlcl --from runs/derain_syn.pt --steps 400 -o runs/derain_nlcl.pt
    python scripts/train_derain_default.py --veil-stage runs/derain_syn3.pt --steps 3000 -o runs/derain_veil.pt
    python scripts/train_derain_default.py --export runs/derain_nlcl.pt   # -> package weights

``--stage synthetic --from MODEL --recipe-json '{"net": {"dark_radius": 7}}'``
continues a model with a wider network: the new stem inputs (the dark-channel
cue) start at zero weight, one more U-Net level (``"channels": [32, 64, 128, 256]``)
starts as a zero contribution, and a new veil branch (``"veil": true``) starts
untrained (:func:`napari_nlcl.nets.derain.load_grown`).

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

from napari_nlcl.inference import select_device
from napari_nlcl.io import list_images, read_file
from napari_nlcl.modelfile import model_networks, read_checkpoint
from napari_nlcl.nets.derain import DEFAULT_WEIGHTS, load_grown
from napari_nlcl.training import TrainConfig, Trainer, build_recipe, export_model, recipe_config_of
from napari_nlcl.training.data import RandomCrops

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
VALIDATION = ("kodak",)


def photos(folders: list[Path], min_size: int = 128) -> list[np.ndarray]:
    images = []
    for folder in folders:
        for f in list_images(folder):
            im = np.asarray(read_file(f))
            if im.ndim == 3 and im.shape[-1] >= 3 and min(im.shape[:2]) >= min_size:
                images.append(np.ascontiguousarray(im[..., :3]))
    print(f"{len(images)} photos from {[p.name for p in folders]}", flush=True)
    return images


def clean_photos(root: Path) -> list[np.ndarray]:
    return photos(sorted(p for p in root.iterdir() if p.is_dir() and p.name not in VALIDATION))


def train_veil(start: Path, out: Path, images: list[np.ndarray], steps: int, *, lr: float = 1e-3,
               batch_size: int = 8, size: tuple[int, int] = (320, 480), sigma: float = 16.0,
               bank_size: int = 512, seed: int = 0, settings: dict | None = None) -> None:
    """Veil stage: a veil branch (``VeilNet``) for ``start``'s background generator, trained alone.

    Rain (the recipe's synthesis with ``settings``) is drawn over whole photos
    resized to ``size``; the target is the rain layer's local mean (its grey
    level, Gaussian-smoothed with ``sigma`` px) at the thumbnail's resolution,
    the part of the rain a local network cannot tell from the scene.  The
    U-Net is left as it is: it removes what remains, the streaks.
    """
    import time

    import torch.nn.functional as F

    from napari_nlcl.modelfile import save_checkpoint
    from napari_nlcl.nets.derain import DerainNet
    from napari_nlcl.synth.banks import add_bank_rain, gaussian_blur, make_rain_bank
    from napari_nlcl.training import load_recipe
    from napari_nlcl.training.derain_config import DerainConfig

    recipe, payload = load_recipe(start)
    cfg = json.loads(payload["config"])
    rcfg = {**cfg["recipe"], **(settings or {})}
    synthesis = DerainConfig(**rcfg).synthesis_kwargs()
    gen = recipe.gen_b
    net = DerainNet(type(gen.config)(**{**vars(gen.config), "veil": True}), output="background",
                    name=gen.info.name)
    load_grown(net, gen.state_dict())
    branch = net.veil_net
    grid = branch.thumbnail_size(*size)  # the loss compares veils on the branch's own thumbnail grid
    photos_t = torch.stack([F.interpolate(torch.from_numpy(im).permute(2, 0, 1)[None].float(), size=size,
                                          mode="area")[0].to(torch.uint8) for im in images])
    bank, _ = make_rain_bank(rcfg.get("rain_bank", 128) // 4, bank_size, seed)
    sheet_bank = make_rain_bank(rcfg.get("rain_bank", 128) // 8, bank_size, seed + 1, kind="sheets")[0] \
        if synthesis["sheets"] else None
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    def loss_at(step: int) -> torch.Tensor:
        idx = torch.randint(len(photos_t), (batch_size,), generator=g)
        clean = photos_t[idx].float() / 255
        if float(torch.rand((), generator=g)) < 0.5:
            clean = clean.flip(-1)
        rainy = add_bank_rain(clean, bank, g, **synthesis, sheet_bank=sheet_bank)
        target = gaussian_blur((rainy - clean).mean(1, keepdim=True), sigma)
        pred = branch(rainy)  # resized back to the image
        return F.mse_loss(F.adaptive_avg_pool2d(pred, grid), F.adaptive_avg_pool2d(target, grid))

    started = fit_branch(branch.parameters(), loss_at, steps, lr, stage="veil", every=100,
                         report=lambda mse: {"veil_rmse": round(mse ** 0.5, 4)})
    nets = dict(payload["networks"])
    nets["gen_b"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
    payload["networks"] = nets
    cfg["recipe"] = {**cfg["recipe"], "net": {**cfg["recipe"].get("net", {}), "veil": True}}
    payload["config"] = json.dumps(cfg)
    meta = json.loads(payload.get("metadata", "{}") or "{}")
    meta["veil_stage"] = {"steps": steps, "lr": lr, "batch_size": batch_size, "size": list(size), "sigma": sigma,
                          "seed": seed, "started_from": str(start), "command": " ".join(sys.argv)}
    payload["metadata"] = json.dumps(meta)
    payload.pop("optimizers", None)
    payload["exported"] = True  # a new network: the old optimiser state does not fit it
    save_checkpoint(out, payload)
    print(f"veil branch trained in {(time.perf_counter() - started) / 60:.1f} min -> {out}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("synthetic", "nlcl"), default="synthetic")
    ap.add_argument("-o", "--output", default="runs/derain_syn.pt")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=None, help="default 5e-4 (synthetic), 5e-5 (nlcl)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe-json", default="{}", help='more recipe settings, e.g. \'{"asymmetric": false}\'')
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ema", type=float, default=0.0,
                    help="keep a moving average of the weights with this decay (e.g. 0.999); it is what is exported")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--from", dest="start", type=Path, help="stage 2: start from this stage-1 model")
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--export", type=Path, help="copy the weights of this checkpoint into the package")
    ap.add_argument("--veil-stage", type=Path, metavar="MODEL",
                    help="train a veil branch for this model on whole photos (--steps, -o, --lr, --recipe-json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.veil_stage:
        train_veil(args.veil_stage, Path(args.output), clean_photos(args.data / "clean"), args.steps,
                   lr=args.lr or 1e-3, batch_size=args.batch_size, seed=args.seed,
                   settings=json.loads(args.recipe_json))
        return 0
    if args.export:
        # the generators only: the discriminator and MLP heads are re-learnt when fine-tuning
        export_model(args.export, DEFAULT_WEIGHTS, networks=("gen_b", "gen_r"),
                     settings=json.loads(args.recipe_json))  # e.g. the settings fine-tuning should use
        print(f"exported {args.export} -> {DEFAULT_WEIGHTS} ({DEFAULT_WEIGHTS.stat().st_size / 1e6:.2f} MB)")
        return 0
    clean = clean_photos(args.data / "clean")
    stage = args.stage
    if args.resume:
        stage = recipe_config_of(args.resume)[1].get("mode", stage)
    if stage == "synthetic":
        sources = {"clean": clean}
    else:
        sources = {"rainy": photos([args.data / "rain" / "real_sirr" / "real_input"]), "clean": clean}
    crops = RandomCrops(sources, crop=args.crop, batch_size=args.batch_size, seed=args.seed)
    if args.resume:
        trainer = Trainer.resume(args.resume, crops, steps=args.steps)
    else:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        lr = args.lr or (5e-4 if args.stage == "synthetic" else 5e-5)
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=lr,
                             seed=args.seed, schedule="cosine", decay_start=0.2, checkpoint_every=250,
                             ema=args.ema)
        settings = {"rain_bank": 512, "veil": 0.5, **json.loads(args.recipe_json)}
        meta = {"command": " ".join(sys.argv)}
        if args.stage == "synthetic":
            recipe = build_recipe("derain", {"mode": "synthetic", **settings},
                                  device=select_device(config.device), seed=config.seed)
            if args.start:  # continue the generators, grown to the requested network if needed
                for k, state in model_networks(read_checkpoint(args.start)).items():
                    if k in recipe.networks:  # a new veil branch starts untrained
                        try:
                            load_grown(recipe.networks[k], state)
                        except ValueError as exc:
                            raise SystemExit(f"{args.start}: {k}: {exc}") from exc
                meta["started_from"] = str(args.start)
            # built after the weights are in place, so that a weight average starts from them
            trainer = Trainer(recipe, crops, config, checkpoint=out, metadata=meta)
        else:
            if not args.start:
                raise SystemExit("--stage nlcl needs --from STAGE1_MODEL")
            trainer = Trainer.from_model(args.start, crops, config,
                                         recipe_config={"mode": args.stage, **settings},
                                         checkpoint=out, metadata=meta)
    run_logged(trainer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
