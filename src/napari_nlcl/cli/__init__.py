"""Command line: ``napari-nlcl dehaze IN -o OUT`` and friends (tasks in :mod:`.tasks`, training in :mod:`.train`).

Inputs: an image file, a multi-page TIFF, a folder of images or a zarr array;
``--sample NAME`` uses a built-in sample instead.  Outputs: TIFF, PNG/JPEG
(single images) or zarr; stacks are processed and written one plane at a
time with a progress bar.  Exit status 2 and a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import sys

from napari_nlcl.cli.tasks import add_task_parsers, cluster, run_task
from napari_nlcl.cli.train import TrainingInterrupted, add_train_parser, run_train


def build_parser() -> argparse.ArgumentParser:
    from napari_nlcl import __version__

    parser = argparse.ArgumentParser(
        prog="napari-nlcl",
        description="Remove rain and haze from images and stacks (napari-nlcl).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    add_task_parsers(sub)

    add_train_parser(sub)

    m = sub.add_parser("methods", help="list the available methods and training recipes")
    m.add_argument("task", nargs="?", help="only this task (dehaze, derain, translate)")

    s = sub.add_parser("samples", help="write the built-in sample images to a folder")
    s.add_argument("folder", help="folder to write to (created if missing)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "methods":
            from napari_nlcl import registry

            for spec in registry.methods(args.task):
                print(f"{spec.task:10s} {spec.name:12s} {spec.description}")
            from napari_nlcl.training import recipe_names

            for name in recipe_names():
                print(f"{'train':10s} {name:12s} training recipe")
            return 0
        if args.command == "samples":
            from napari_nlcl.samples import write_samples

            for path in write_samples(args.folder):
                print(path)
            return 0
        if args.command == "train":
            out = run_train(args)
        else:
            with cluster(args.scheduler):
                out = run_task(args)
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        print(f"napari-nlcl: error: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        print(f"napari-nlcl: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("napari-nlcl: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
