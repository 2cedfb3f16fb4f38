"""``napari-nlcl dehaze|derain|translate``: one image, a stack or a folder through a model, written plane by plane."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from napari_nlcl.cli.args import add_engine_args, parse_option


def add_task_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``dehaze``, ``derain`` and ``translate`` subcommands."""
    from napari_nlcl import registry

    tasks = (("dehaze", "remove haze from"), ("derain", "remove rain streaks from"),
             ("translate", "translate (domain A to B) with a trained model"))
    for task, what in tasks:
        d = sub.add_parser(task, help=f"{what} an image, a stack or a folder")
        src = d.add_mutually_exclusive_group(required=True)
        src.add_argument("input", nargs="?", help="image file, multi-page TIFF, folder of images or .zarr")
        src.add_argument("--sample", choices=sample_names(), help="use a built-in sample image instead")
        d.add_argument("-o", "--output", help="output .tif, .png, .jpg or .zarr (default: next to the input)")
        d.add_argument("-m", "--method", "--model", default="default", metavar="METHOD_OR_MODEL",
                       help="a method (" + ", ".join(s.name for s in registry.methods(task))
                       + ") or a model file trained with `napari-nlcl train`")
        if task == "translate":  # translators have no method options
            d.set_defaults(option=[])
        else:
            d.add_argument("-O", "--option", action="append", type=parse_option, default=[],
                           metavar="KEY=VALUE", help="method option (repeatable; see `napari-nlcl methods`)")
        if task == "derain":
            d.add_argument("--rain-layer", metavar="OUT2",
                           help="also write the rain layer (input - background) to this file")
        add_engine_args(d)


DEFAULT_SUFFIX = {"dehaze": "_dehazed", "derain": "_derained", "translate": "_translated"}


def sample_names() -> list[str]:
    from napari_nlcl.samples import SAMPLES

    return list(SAMPLES)


def default_output(inp: Path, task: str) -> Path:
    suffix = DEFAULT_SUFFIX[task]
    if inp.is_dir():
        return inp.with_name(inp.name.removesuffix(".zarr") + suffix + ".zarr")
    if inp.suffix.lower() in {".tif", ".tiff", ".png"}:
        return inp.with_name(inp.stem + suffix + inp.suffix)
    return inp.with_name(inp.stem + suffix + ".png")


def progress_bar(desc: str):
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit="tile", disable=None, file=sys.stderr, leave=False)


def run_task(args: argparse.Namespace) -> Path:
    from napari_nlcl import api, io, samples
    from napari_nlcl.inference.intensity import residual

    task = args.command
    if args.sample:
        image = samples.SAMPLES[args.sample]().data
        ext = ".tif" if image.ndim == 4 else ".png"
        default_out = Path.cwd() / f"{args.sample}{DEFAULT_SUFFIX[task]}{ext}"
    else:
        inp = Path(args.input)
        image = io.read_image(inp)
        default_out = default_output(inp, task)
    out_path = Path(args.output) if args.output is not None else default_out
    rain_path = Path(args.rain_layer) if getattr(args, "rain_layer", None) else None
    outputs = [out_path] + ([rain_path] if rain_path is not None else [])
    inputs = [] if args.sample else [inp]
    io.check_targets(outputs, inputs)  # every target, before computing anything

    options = dict(args.option)
    engine = dict(
        channel_axis=args.channel_axis, tile=args.tile, overlap=args.overlap, device=args.device,
        batch_size=args.batch_size, amp=args.amp, value_range=args.value_range,
        precision=args.precision,
    )
    func = getattr(api, task)
    lazy = hasattr(image, "dask") or type(image).__module__.startswith("dask")
    if lazy:
        result = func(image, args.method, **engine, **options)
    else:
        with progress_bar(task) as bar:

            def on_progress(p) -> None:
                bar.total = p.total
                bar.n = p.done
                bar.refresh()

            result = func(image, args.method, progress=on_progress, **engine, **options)
    targets = [(out_path, result)]
    if rain_path is not None:  # from the same pass: a lazy background is computed once per plane
        targets.append((rain_path, residual(image, result)))
    with progress_bar(f"{task} (planes)" if lazy else "writing") as bar:
        bar.unit = "plane"

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        io.write_images(targets, progress=update, inputs=inputs)
    return out_path


@contextlib.contextmanager
def cluster(address: str | None):
    """A dask.distributed client for ``--scheduler ADDRESS`` while the task runs (else nothing)."""
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs the 'distributed' package: pip install distributed") from None
    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise OSError(f"cannot reach the dask scheduler at {address}: {exc}") from None
    with client:
        yield client
