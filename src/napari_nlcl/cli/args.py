"""Argument parsing shared by the subcommands: option values, channel axes, ranges, engine flags."""

from __future__ import annotations

import argparse
from typing import Any


def parse_value(text: str) -> Any:
    low = text.lower()
    if low in {"true", "yes", "on"}:
        return True
    if low in {"false", "no", "off"}:
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "," in text:  # a pair or list of values: -S rain_opacity=0.1,0.5
        return [parse_value(part.strip()) for part in text.strip("[]()").split(",")]
    return text


def parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), parse_value(value.strip())


def parse_channel_axis(text: str) -> Any:
    if text.lower() == "auto":
        return "auto"
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("channel axis must be 'auto', 'none' or an integer") from None


def parse_range(text: str) -> Any:
    if text == "plane":
        return "plane"
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("value range must be 'plane' or LOW,HIGH") from None
    return (lo, hi)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--tile", type=int, default=1024, help="tile size in pixels (default 1024)")
    g.add_argument("--overlap", type=int, default=None, help="tile overlap (default: from the model)")
    g.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps")
    g.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass")
    g.add_argument("--amp", action="store_true", help="half-precision autocast on CUDA (= --precision float16)")
    g.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="arithmetic: auto (bfloat16 on CPUs with native bfloat16, else float32), float32, "
                   "bfloat16, float16 (CUDA)")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="compute a stack (TIFF/zarr input) on a dask.distributed cluster, e.g. "
                   "tcp://host:8786 (needs the distributed package; files on a shared file system)")
    g.add_argument("--channel-axis", type=parse_channel_axis, default="auto",
                   help="'auto' (trailing axis of 3 or 4 is RGB), 'none' (grayscale) or an axis")
    g.add_argument("--value-range", type=parse_range, default=None,
                   help="intensity normalisation: 'plane' or LOW,HIGH (default: by dtype)")
