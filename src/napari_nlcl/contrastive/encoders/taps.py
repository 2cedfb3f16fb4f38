"""Tap the outputs of named sub-modules of any ``nn.Module``: :class:`FeatureExtractor`."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._common import check_layer_names, format_names

__all__ = ["FeatureExtractor"]


# ---------------------------------------------------------------------------------------------
# Tapping any module
# ---------------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once every tapped layer has run."""


class _TapState:
    """What the hooks share with their extractor (the hooks must not reference the extractor)."""

    __slots__ = ("store", "detach", "stop_at_last", "n_hooked")

    def __init__(self, detach: bool, stop_at_last: bool, n_hooked: int):
        self.store: dict[str, Tensor] | None = None  # None: not running, hooks do nothing
        self.detach = detach
        self.stop_at_last = stop_at_last
        self.n_hooked = n_hooked


def _make_hook(state: _TapState, name: str) -> Callable:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        store = state.store
        if store is None or name in store:  # not extracting, or a re-used module's later call
            return
        if not isinstance(output, Tensor):
            raise TypeError(
                f"layer {name!r} ({type(module).__name__}) returns {type(output).__name__}, "
                "not a Tensor; tap one of its sub-modules instead"
            )
        store[name] = output.detach() if state.detach else output
        if state.stop_at_last and len(store) == state.n_hooked:
            raise _StopForward

    return hook


def _remove_handles(handles: list) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()


class FeatureExtractor:
    """Tap the outputs of named sub-modules of any ``nn.Module``.

    Forward hooks are registered once, here, and stay until :meth:`remove`
    (or the end of a ``with`` block, or the extractor being garbage
    collected).  They record activations only while the extractor itself runs
    the module, so calling the module directly (e.g. the generator producing
    its output) costs nothing and stores nothing; the recorded activations are
    dropped as soon as :meth:`forward` returns them.

    The extractor does not own the module: it is not an ``nn.Module``, has no
    parameters, and moving, training or checkpointing the module is the
    owner's business (no duplicated weights in a checkpoint).

    Parameters
    ----------
    module : nn.Module
        The network to tap (a generator as in CUT, a discriminator as in NLCL,
        a frozen trunk, ...).
    layers : sequence of str
        Names as listed by ``module.named_modules()``, plus ``"input"`` for the
        raw input of :meth:`forward` (it takes precedence over a sub-module of
        that name).  Repeats are allowed.
    detach : bool
        Return detached features and run the module under ``torch.no_grad()``
        (no graph is built, nothing is back-propagated into the module).
    stop_at_last : bool
        End the forward pass as soon as every tapped layer has run (by raising
        a private exception from the last hook and catching it), so nothing
        after the deepest tapped layer is computed.  Only for modules whose
        ``forward`` does not catch exceptions or keep state half-updated.

    Notes
    -----
    If a tapped module runs more than once in one forward pass (a shared
    block), the output of its first call is returned.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> with FeatureExtractor(net, ["input", "1", "2"]) as tap:
    ...     feats = tap(torch.rand(2, 3, 16, 16))
    >>> [tuple(f.shape) for f in feats]
    [(2, 3, 16, 16), (2, 8, 14, 14), (2, 4, 12, 12)]
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Sequence[str],
        *,
        detach: bool = False,
        stop_at_last: bool = False,
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        layers = check_layer_names(layers)
        named = {name: m for name, m in module.named_modules() if name}
        unknown = [n for n in layers if n != "input" and n not in named]
        if unknown:
            raise ValueError(
                f"unknown layer name(s) {unknown} for {type(module).__name__}; available: "
                f"'input', {format_names(list(named))}"
            )
        hooked = list(dict.fromkeys(n for n in layers if n != "input"))
        self._module = module
        self._layers = tuple(layers)
        self._hooked = tuple(hooked)
        self._state = _TapState(bool(detach), bool(stop_at_last), len(hooked))
        self._handles = [named[n].register_forward_hook(_make_hook(self._state, n)) for n in hooked]
        # the hooks only reference the state, so an unused extractor can be collected; then its
        # hooks go with it
        self._finalizer = weakref.finalize(self, _remove_handles, self._handles)

    # -- properties -----------------------------------------------------------------------
    @property
    def module(self) -> nn.Module:
        """The tapped module."""
        return self._module

    @property
    def layers(self) -> tuple[str, ...]:
        """The tapped layer names, in output order."""
        return self._layers

    @property
    def detach(self) -> bool:
        return self._state.detach

    @property
    def stop_at_last(self) -> bool:
        return self._state.stop_at_last

    @property
    def removed(self) -> bool:
        """True once the hooks are removed (the extractor can no longer be used)."""
        return not self._finalizer.alive

    # -- running --------------------------------------------------------------------------
    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
        """Run ``module(x, *args, **kwargs)`` and return the tapped features in layer order.

        The module's own output is discarded.  When only ``"input"`` is tapped
        the module is not run.
        """
        if self.removed:
            raise RuntimeError("this FeatureExtractor's hooks were removed; create a new one")
        state = self._state
        store: dict[str, Tensor] = {}
        state.store = store
        try:
            grad_ctx = torch.no_grad() if state.detach else contextlib.nullcontext()
            with grad_ctx:
                if self._hooked:
                    try:
                        self._module(x, *args, **kwargs)
                    except _StopForward:
                        pass
        finally:
            state.store = None
        missing = [n for n in self._hooked if n not in store]
        if missing:
            raise RuntimeError(
                f"layer(s) {missing} of {type(self._module).__name__} did not run during its "
                "forward pass, so they cannot be tapped"
            )
        inp = x.detach() if state.detach and isinstance(x, Tensor) else x
        return [inp if n == "input" else store[n] for n in self._layers]

    def __call__(self, x: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
        return self.forward(x, *args, **kwargs)

    # -- hooks lifetime -------------------------------------------------------------------
    def remove(self) -> None:
        """Remove the hooks from the module (idempotent)."""
        self._finalizer()

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        flags = f"detach={self.detach}, stop_at_last={self.stop_at_last}"
        state = ", removed" if self.removed else ""
        return (
            f"FeatureExtractor({type(self._module).__name__}, layers={list(self._layers)}, "
            f"{flags}{state})"
        )
