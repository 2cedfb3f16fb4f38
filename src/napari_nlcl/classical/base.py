"""What the classical methods share as models: a parameter-free filter with a :class:`ModelInfo`."""

from __future__ import annotations

from typing import Any

from torch import nn

from napari_nlcl.model import ModelInfo

__all__ = ["ClassicalModel"]


class ClassicalModel(nn.Module):
    """Base of the classical (parameter-free) :class:`~napari_nlcl.model.Model` s.

    They take any number of channels in ``[0, 1]`` and any size, tile exactly
    (translation-invariant filters, globals estimated once per plane) and gain
    nothing from bfloat16 (no convolution work to speed up).  A subclass
    validates its options, then calls :meth:`_set_info` with them.
    """

    info: ModelInfo

    def _set_info(
        self, task: str, name: str, *, min_size: int, receptive_field: int, config: dict[str, Any]
    ) -> None:
        self.info = ModelInfo(
            task=task,
            name=name,
            in_channels=None,
            out_channels=None,
            value_range=(0.0, 1.0),
            min_size=min_size,
            size_multiple=1,
            receptive_field=receptive_field,
            exact_tiling=True,
            auto_bfloat16=False,  # a filter: no convolution work for bfloat16 to speed up
            config=config,
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.info.config.items())
