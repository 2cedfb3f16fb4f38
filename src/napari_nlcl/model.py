"""The contract between a network and the inference engine.

A *model* is any ``torch.nn.Module`` that carries a :class:`ModelInfo` in an
attribute named ``info``.  The engine (:func:`napari_nlcl.inference.predict`)
only relies on this contract, so derain, dehaze and translate networks plug in
without the engine knowing which is which.

This module must stay importable without torch: ``import napari_nlcl`` is
torch-free and the protocol below is used only for typing and ``isinstance``
checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

TASKS = ("dehaze", "derain", "translate", "identity")


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know about a network.

    Parameters
    ----------
    task
        One of ``"dehaze"``, ``"derain"``, ``"translate"`` or ``"identity"``.
    name
        Human-readable name shown in widgets and messages.
    in_channels
        Channels the network expects (1 or 3), or ``None`` when it accepts any
        number of channels (e.g. the Dark Channel Prior).
    out_channels
        Channels it returns; ``None`` means "as many as it was given".
    value_range
        Intensity range of the network's input and output tensors, e.g.
        ``(0, 1)`` or ``(-1, 1)``.  The engine maps the image into it and back.
    min_size
        Smallest height/width the network accepts.  Smaller images are
        rejected with a clear message.
    size_multiple
        Height and width are reflect-padded to a multiple of this number
        (e.g. 4 for two stride-2 down-samplings) and cropped back.
    receptive_field
        Width in pixels of the region of the input that influences one output
        pixel.  The engine uses it to choose tile overlaps so that tiling
        leaves no seams; a network whose output depends on the whole image
        (instance norm) should set ``exact_tiling=False``.
    exact_tiling
        Whether tiled output equals untiled output (true for convolutional
        nets without global statistics).
    config
        Free-form JSON-serialisable settings the network was built with.
    auto_bfloat16
        Whether ``precision="auto"`` may run the network in bfloat16 on a CPU with native
        bfloat16 (:mod:`napari_nlcl.inference.precision`).  Set it False where that costs quality or
        gains no speed; an explicit ``precision="bfloat16"`` still applies.
    """

    task: str
    name: str
    in_channels: int | None = 3
    out_channels: int | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    min_size: int = 1
    size_multiple: int = 1
    receptive_field: int = 1
    exact_tiling: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    auto_bfloat16: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for name in ("min_size", "size_multiple", "receptive_field"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("in_channels", "out_channels"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")

    @property
    def halo(self) -> int:
        """Pixels on each side of an output pixel that influence it."""
        return self.receptive_field // 2


@runtime_checkable
class Model(Protocol):
    """A callable network with metadata.

    ``model(x)`` maps a float tensor ``(B, C, H, W)`` in ``info.value_range``
    to a tensor of the same height and width.  A model whose output depends on
    a whole-image statistic (the Dark Channel Prior's atmospheric light) may
    define ``estimate_globals(x) -> dict`` ; the engine calls it once per image
    plane on the full plane and passes the result to every tile as keyword
    arguments, so tiles agree with each other; a global that is a
    ``(1, C, H, W)`` map of the whole plane (a spatially varying estimate) is
    cut into each tile's window instead.  A model that sets
    ``globals_from_input = True`` computes the same globals from its input
    when none are given (instance norm), so the engine skips the estimate for a
    plane it runs as a single tile.
    """

    info: ModelInfo

    def __call__(self, x: Any, **globals_: Any) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...
