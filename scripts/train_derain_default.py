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
    python scripts/train_derain_default.py --export runs/derain_nlcl.pt   # -> package weights

``--stage synthetic --from MODEL --recipe-json '{"net": {"dark_radius": 7}}'``
continues a model with a wider network: the new stem inputs (the dark-channel
cue) start at zero weight (:func:`napari_nlcl.methods.nlcl.grow_stem`), and a
new veil branch (``"veil": true``) starts untrained.

Logs one line every 50 steps; a checkpoint every 250 steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from _training_log import run_logged

from napari_nlcl.data import RandomCrops
from napari_nlcl.engine import TrainConfig, Trainer, export_model, read_checkpoint, recipe_config_of
from napari_nlcl.io import _imread, list_images
from napari_nlcl.methods.nlcl import DEFAULT_WEIGHTS, grow_stem

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
VALIDATION = ("kodak",)


def photos(folders: list[Path], min_size: int = 128) -> list[np.ndarray]:
    images = []
    for folder in folders:
        for f in list_images(folder):
            im = np.asarray(_imread(f))
            if im.ndim == 3 and im.shape[-1] >= 3 and min(im.shape[:2]) >= min_size:
                images.append(np.ascontiguousarray(im[..., :3]))
    print(f"{len(images)} photos from {[p.name for p in folders]}", flush=True)
    return images


def clean_photos(root: Path) -> list[np.ndarray]:
    return photos(sorted(p for p in root.iterdir() if p.is_dir() and p.name not in VALIDATION))


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
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--from", dest="start", type=Path, help="stage 2: start from this stage-1 model")
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--export", type=Path, help="copy the weights of this checkpoint into the package")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export:
        # the generators only: the discriminator and MLP heads are re-learnt when fine-tuning
        export_model(args.export, DEFAULT_WEIGHTS, networks=("gen_b", "gen_r"))
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
                             seed=args.seed, schedule="cosine", decay_start=0.2, checkpoint_every=250)
        settings = {"rain_bank": 512, "veil": 0.5, **json.loads(args.recipe_json)}
        meta = {"command": " ".join(sys.argv)}
        if args.stage == "synthetic":
            trainer = Trainer.from_recipe_name("derain", crops, config,
                                               recipe_config={"mode": "synthetic", **settings},
                                               checkpoint=out, metadata=meta)
            if args.start:  # continue the generators, grown to the requested network if needed
                nets = trainer.recipe.networks
                for k, state in read_checkpoint(args.start)["networks"].items():
                    if k in nets:  # a new veil branch starts untrained
                        missing, unexpected = nets[k].load_state_dict(grow_stem(state, nets[k]), strict=False)
                        if unexpected or any(not m.startswith("veil_net.") for m in missing):
                            raise SystemExit(f"{args.start}: {k} does not fit: {missing} {unexpected}")
                trainer.metadata["started_from"] = str(args.start)
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
