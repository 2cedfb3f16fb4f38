"""Projection heads (2-layer MLPs), built eagerly from :func:`infer_channels`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .taps import FeatureExtractor

__all__ = ["ProjectionHead", "ProjectionHeads", "infer_channels"]


# ---------------------------------------------------------------------------------------------
# Projection heads
# ---------------------------------------------------------------------------------------------


def _reset_linear_(linear: nn.Linear, generator: torch.Generator | None) -> None:
    """PyTorch's default ``nn.Linear`` initialisation, drawn from ``generator``."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(linear.in_features)
        nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


class ProjectionHead(nn.Module):
    """Two-layer MLP (Linear-ReLU-Linear) followed by L2 normalisation.

    Maps feature vectors (the last axis, e.g. ``(B, N, C)`` sampled patches or
    ``(B, C)`` pooled features) to unit vectors of ``out_dim`` dimensions,
    as CUT's and NLCL's MLP heads do.

    Parameters
    ----------
    in_channels : int
        Size of the input's last axis.
    out_dim, hidden : int
        Output and hidden sizes (CUT: 256 and 256).
    generator : torch.Generator, optional
        Draw the initial weights from this generator (PyTorch's default
        ``nn.Linear`` scheme) instead of the global RNG.
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int = 256,
        hidden: int = 256,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        sizes = {"in_channels": in_channels, "out_dim": out_dim, "hidden": hidden}
        for label, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
        )
        if generator is not None:
            _reset_linear_(self.mlp[0], generator)
            _reset_linear_(self.mlp[2], generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_channels:
            hint = ""
            if x.ndim == 4 and x.shape[1] == self.in_channels:
                hint = (
                    "; this looks like a (B, C, H, W) feature map: sample patches to (B, N, C) "
                    "or use x.flatten(2).transpose(1, 2)"
                )
            raise ValueError(
                f"expected features with {self.in_channels} channels on the last axis, "
                f"got shape {tuple(x.shape)}{hint}"
            )
        return F.normalize(self.mlp(x), dim=-1, eps=1e-7)


class ProjectionHeads(nn.ModuleList):
    """One :class:`ProjectionHead` per tapped layer, all created in ``__init__``.

    Build it before the optimiser (see :func:`infer_channels`) and give its
    ``parameters()`` to the optimiser, so the heads are trained.

    Parameters
    ----------
    in_channels : sequence of int
        Channels of each tapped layer, in order.
    out_dim, hidden : int
        Sizes of every head.
    generator : torch.Generator, optional
        Seeded initialisation (heads drawn one after the other).

    Examples
    --------
    >>> import torch
    >>> heads = ProjectionHeads([8, 16], out_dim=32)
    >>> z = heads([torch.rand(2, 10, 8), torch.rand(2, 10, 16)])
    >>> [tuple(t.shape) for t in z]
    [(2, 10, 32), (2, 10, 32)]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_dim: int = 256,
        hidden: int = 256,
        *,
        generator: torch.Generator | None = None,
    ):
        if isinstance(in_channels, int):
            raise TypeError(
                f"in_channels must be a sequence of ints (one per layer), got {in_channels}"
            )
        in_channels = list(in_channels)
        if not in_channels:
            raise ValueError("in_channels is empty: give the channel count of each tapped layer")
        super().__init__(
            ProjectionHead(c, out_dim, hidden, generator=generator) for c in in_channels
        )
        self.in_channels = tuple(in_channels)
        self.out_dim = out_dim

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Project ``features[i]`` with head ``i``; returns unit vectors on the last axis."""
        if isinstance(features, Tensor):
            raise TypeError(
                "features must be a list of tensors (one per head), got a single Tensor"
            )
        features = list(features)
        if len(features) != len(self):
            raise ValueError(f"got {len(features)} feature tensors for {len(self)} heads")
        return [head(f) for head, f in zip(self, features)]


def infer_channels(
    extractor: Callable[[Tensor], Sequence[Tensor]],
    example_input: Tensor | Sequence[int],
) -> list[int]:
    """Channels (axis 1) of each feature an extractor returns, from one dummy forward.

    Use it to build :class:`ProjectionHeads` eagerly, before training.  The
    forward runs under ``torch.no_grad()`` with the module temporarily in eval
    mode (so batch-norm statistics are not touched); training flags are
    restored afterwards.

    Parameters
    ----------
    extractor : callable
        A :class:`FeatureExtractor`, an encoder of this package, or any callable
        ``x -> list[Tensor]`` with channel-first outputs (``(B, C, ...)``).
    example_input : Tensor or tuple of int
        An input, or its shape (zeros on the module's device and dtype are used).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> infer_channels(FeatureExtractor(net, ["0", "2"]), (1, 3, 16, 16))
    [8, 4]
    """
    if isinstance(extractor, FeatureExtractor):
        module: nn.Module | None = extractor.module
    elif isinstance(extractor, nn.Module):
        module = extractor
    else:
        module = None
    if not isinstance(example_input, Tensor):
        shape = tuple(int(s) for s in example_input)
        ref = None
        if module is not None:
            ref = next(module.parameters(), None)
            if ref is None:
                ref = next(module.buffers(), None)
        kw: dict[str, Any] = {}
        if ref is not None:
            kw = {"device": ref.device, "dtype": ref.dtype if ref.is_floating_point() else None}
        example_input = torch.zeros(shape, **kw)
    modes = [(m, m.training) for m in module.modules()] if module is not None else []
    try:
        if module is not None:
            module.eval()
        with torch.no_grad():
            feats = extractor(example_input)
    finally:
        for m, mode in modes:
            m.training = mode
    channels = []
    for i, f in enumerate(feats):
        if not isinstance(f, Tensor) or f.ndim < 2:
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise ValueError(f"feature {i} is not a (B, C, ...) tensor: {shape}")
        channels.append(int(f.shape[1]))
    return channels
