"""Weights held aside: snapshots of networks, swapping weights in for a block, running averages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn


def snapshot(networks: Mapping[str, nn.Module], names: Iterable[str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Copies of the state dicts of ``networks`` (all, or those in ``names``)."""
    return {name: {k: v.detach().clone() for k, v in networks[name].state_dict().items()}
            for name in (networks if names is None else names)}


@contextlib.contextmanager
def holding(networks: Mapping[str, nn.Module],
            states: Mapping[str, Mapping[str, torch.Tensor]] | None) -> Iterator[None]:
    """Within the block the networks named in ``states`` hold those weights (None: no change)."""
    if not states:
        yield
        return
    current = snapshot(networks, states)
    try:
        for name, state in states.items():
            networks[name].load_state_dict(state)
        yield
    finally:
        for name, state in current.items():
            networks[name].load_state_dict(state)


@torch.no_grad()
def update_average(average: Mapping[str, dict[str, torch.Tensor]], networks: Mapping[str, nn.Module],
                   decay: float, updates: int, *, warmup: bool = True) -> None:
    """One step of an exponential moving average of ``networks``' weights (floating tensors; others copied).

    With ``warmup`` the decay warms up as ``(1 + n) / (10 + n)`` over the first
    ``updates`` steps, so that early weights do not dominate; without it the average
    (one that starts as a trained model) moves by ``1 - decay`` from the first step.
    """
    if warmup:
        decay = min(decay, (1 + updates) / (10 + updates))
    for name, net in networks.items():
        avg = average[name]
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                avg[k].lerp_(v, 1.0 - decay)
            else:
                avg[k].copy_(v)
