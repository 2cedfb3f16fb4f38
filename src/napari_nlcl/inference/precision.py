"""Numeric precision and memory layout for running and training networks.

``precision`` is accepted by :func:`napari_nlcl.predict`, the task functions, the CLI
(``--precision``), the widgets and :class:`napari_nlcl.training.TrainConfig`:

``"auto"`` (default)
    bfloat16 autocast on a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX, which
    PyTorch's oneDNN kernels use) for networks that allow it (``ModelInfo.auto_bfloat16``),
    float32 on other CPUs; float32 on CUDA and MPS (``"float16"`` is CUDA's fast path: ask).
``"float32"``
    Full precision everywhere (the reference; results reproducible to float rounding).
``"bfloat16"``
    bfloat16 autocast (CPU or CUDA); weights stay float32.
``"float16"``
    float16 autocast on CUDA with loss scaling in training; refused on the CPU.

Autocast keeps the weights (and, in training, the optimiser's state) in float32 and
runs convolutions and matrix products in the lower precision; reductions, softmax and
the losses stay in float32.  On the CPU networks with convolutions run with
``channels_last`` tensors whatever the precision (oneDNN's fastest layout; the same
arithmetic).  The measured speed and quality cost of each shipped model are in the README
(*Benchmarks*, *CPU fast path*).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


@dataclass(frozen=True)
class Precision:
    """What :func:`resolve` decided: the autocast dtype (None = float32) and the layout."""

    name: str  # "float32", "bfloat16" or "float16"
    device_type: str
    channels_last: bool

    @property
    def dtype(self):
        import torch

        return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.name)

    @property
    def reduced(self) -> bool:
        return self.name != "float32"

    def autocast(self):
        """The autocast context for this precision (a no-op for float32)."""
        import torch

        if not self.reduced:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def for_model(self, net) -> Precision:
        """This precision for ``net``: ``channels_last`` only for a network with convolution
        weights (a filter such as the Dark Channel Prior runs faster in NCHW)."""
        params = getattr(net, "parameters", None)
        if self.channels_last and not (params and any(p.ndim == 4 for p in params())):
            return dataclasses.replace(self, channels_last=False)
        return self

    def prepare(self, net):
        """Put ``net`` in this layout (in place; the maths is unchanged) and return it."""
        import torch

        if self.channels_last and not getattr(net, "_nlcl_channels_last", False):
            net.to(memory_format=torch.channels_last)
            net._nlcl_channels_last = True
        return net

    def tensor(self, x):
        """``x`` in this layout (4-D tensors only)."""
        import torch

        if self.channels_last and getattr(x, "ndim", 0) == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX) and torch's oneDNN
    kernels can use it; elsewhere bfloat16 is emulated and slower than float32."""
    import torch

    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
    except (AttributeError, RuntimeError):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = fh.read()
    except OSError:
        return False  # not Linux: no way to tell native from emulated bfloat16 cheaply
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check(precision: Any) -> str:
    """The canonical name of ``precision``, or a ValueError listing the choices."""
    name = _ALIASES.get(precision, precision) if isinstance(precision, str) else precision
    if name is None:
        return "auto"
    if name not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; use one of {', '.join(map(repr, PRECISIONS))} "
            "('auto' picks bfloat16 on CPUs with native bfloat16, else float32)"
        )
    return name


def resolve(precision: Any, device: Any, *, amp: bool = False, auto_bfloat16: bool = True) -> Precision:
    """Decide the precision for ``device`` (a ``torch.device`` or its string).

    ``amp=True`` is the older spelling of ``precision="float16"`` on CUDA and is ignored
    elsewhere (as it always was).  ``auto_bfloat16=False`` (a network's
    ``ModelInfo.auto_bfloat16``) makes ``"auto"`` mean float32.  On the CPU tensors are
    ``channels_last`` whatever the precision: oneDNN's convolutions are faster in that layout
    and the arithmetic is the same.
    """
    import torch

    name = check(precision)
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    kind = dev.type
    if amp and name == "auto" and kind == "cuda":
        name = "float16"
    if name == "auto":
        name = "bfloat16" if kind == "cpu" and auto_bfloat16 and cpu_has_fast_bf16() else "float32"
    if name == "float16" and kind != "cuda":
        raise ValueError(
            f"precision 'float16' needs a CUDA device (this run is on {kind!r}); use 'bfloat16' "
            "or 'auto' on the CPU"
        )
    if name == "bfloat16" and kind == "mps":
        raise ValueError("precision 'bfloat16' is not supported on Apple MPS; use 'float32'")
    return Precision(name, kind, channels_last=kind == "cpu")
