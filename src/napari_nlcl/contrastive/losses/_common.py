"""Argument checks and the reduction shared by the losses of this package."""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["REDUCTIONS", "check_positive", "check_reduction", "check_tensor", "reduce_loss",
           "shape_of"]


REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------- helpers
def check_tensor(x, name: str, fn: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")


def check_positive(value, name: str, fn: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a positive number, got {value!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{fn}: {name} must be a positive finite number, got {value}")
    return value


def check_reduction(reduction: str, fn: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def shape_of(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)
