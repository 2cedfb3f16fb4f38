"""AECR-Net's ratio-type contrastive regularisation (CR) and its warm-up weight."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ._common import check_tensor, shape_of

__all__ = [
    "AECR_WEIGHTS",
    "ContrastiveRegularization",
    "contrastive_regularization",
    "cr_warmup_weight",
]


#: AECR-Net's per-layer weights for the VGG19 relu1_1 ... relu5_1 features.
AECR_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


# --------------------------------------------------------------------------- CR (AECR-Net)
def _as_negatives(neg, out: Tensor, layer: int, fn: str) -> Tensor:
    """Negatives of one layer as ``(B, K, *out.shape[1:])``."""
    expected = f"(B, K, ...) = ({out.shape[0]}, K, {', '.join(map(str, out.shape[1:]))})"
    if isinstance(neg, Tensor):
        if neg.shape == out.shape:
            return neg.unsqueeze(1)
        if neg.ndim == out.ndim + 1 and neg.shape[0] == out.shape[0] \
                and neg.shape[2:] == out.shape[1:] and neg.shape[1] >= 1:
            return neg
        raise ValueError(
            f"{fn}: neg_feats[{layer}] must have the shape of out_feats[{layer}] "
            f"{shape_of(out)} or {expected}, got {shape_of(neg)}"
        )
    if isinstance(neg, Sequence) and len(neg) > 0 and all(isinstance(t, Tensor) for t in neg):
        for k, t in enumerate(neg):
            if t.shape != out.shape:
                raise ValueError(
                    f"{fn}: neg_feats[{layer}][{k}] must have the shape of out_feats[{layer}] "
                    f"{shape_of(out)}, got {shape_of(t)}"
                )
        return torch.stack(list(neg), dim=1)
    raise TypeError(
        f"{fn}: neg_feats[{layer}] must be a tensor or a non-empty list of tensors, "
        f"got {type(neg).__name__}"
    )


def _check_weights(weights, fn: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(w) for w in weights)
    except TypeError:
        raise TypeError(f"{fn}: weights must be a sequence of numbers, got {weights!r}") from None
    if not weights:
        raise ValueError(f"{fn}: weights must not be empty")
    if any(not (w >= 0 and math.isfinite(w)) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"{fn}: weights must be finite, >= 0 and not all 0, got {weights}")
    return weights


def _check_distance(distance: str, fn: str) -> None:
    if distance not in ("l1", "l2"):
        raise ValueError(f"{fn}: distance must be 'l1' or 'l2', got {distance!r}")


def contrastive_regularization(
    out_feats: Sequence[Tensor],
    pos_feats: Sequence[Tensor],
    neg_feats: Sequence[Tensor | Sequence[Tensor]],
    *,
    weights: Sequence[float] = AECR_WEIGHTS,
    eps: float = 1e-7,
    distance: str = "l1",
    normalize: bool = False,
) -> Tensor:
    r"""Ratio-type contrastive regularisation of AECR-Net (Wu et al., CVPR 2021).

    With :math:`G_i` the ``i``-th feature map of a fixed encoder, ``out`` the
    restored image (anchor), ``pos`` the clear image and ``neg_k`` the
    hazy input(s),

    .. math::

        \mathcal{L}_{CR} = \sum_i w_i \,
            \frac{D(G_i(out), G_i(pos))}
                 {\frac{1}{K}\sum_{k=1}^{K} D(G_i(out), G_i(neg_k)) + \epsilon},

    where :math:`D` is the mean absolute difference over all elements of the
    batch (``distance="l1"``, AECR-Net; ``"l2"``: the mean squared
    difference).  The ``K`` negatives of a layer share one denominator, their
    mean distance.

    The positive and negative features are detached: the clear image is a
    target and the hazy inputs are data, so only ``out_feats`` receives
    gradients (as in AECR-Net's ``ContrastLoss``).

    Scale.  When the network output is still close to the hazy input (early
    training, residual nets initialised near identity) the denominator is
    near 0 and the ratio explodes, so the CR term can dwarf the L1 term
    and cause artefacts (reported by users of the official code,
    GlassyWu/AECR-Net#37).  Two simple fixes: ramp its weight up with
    :func:`cr_warmup_weight`, and/or pass ``normalize=True``, which uses the
    bounded, scale-invariant ratio ``D_ap / (D_ap + D_an + eps)`` per layer
    and divides by ``sum(weights)``, so the loss lies in ``[0, 1]``; it still
    decreases when ``out`` moves from the negatives towards the positive.

    Parameters
    ----------
    out_feats : sequence of Tensor
        One feature map per encoder layer, each ``(B, ...)`` (e.g. ``(B, C, H, W)``).
    pos_feats : sequence of Tensor
        Same shapes as ``out_feats``.
    neg_feats : sequence
        Per layer: a tensor of the shape of ``out_feats[i]`` (one negative),
        a tensor ``(B, K, ...)`` (``K`` negatives), or a list of ``K`` tensors
        of the shape of ``out_feats[i]``.
    weights : sequence of float
        One weight per layer; AECR-Net: ``1/32, 1/16, 1/8, 1/4, 1``.
    eps : float
        Added to the denominator.
    distance : {"l1", "l2"}
        Feature distance :math:`D`.
    normalize : bool
        Use the bounded ratio described above (default ``False``: AECR-Net).

    Returns
    -------
    Tensor
        Scalar.

    Raises
    ------
    ValueError
        If the three lists and ``weights`` differ in length, or shapes differ.
    """
    fn = "contrastive_regularization"
    weights = _check_weights(weights, fn)
    _check_distance(distance, fn)
    eps = float(eps)
    if eps < 0:
        raise ValueError(f"{fn}: eps must be >= 0, got {eps}")
    feats = {"out_feats": out_feats, "pos_feats": pos_feats, "neg_feats": neg_feats}
    for name, value in feats.items():
        if isinstance(value, Tensor) or not isinstance(value, Sequence):
            raise TypeError(f"{fn}: {name} must be a list of feature maps (one per layer), "
                            f"got {type(value).__name__}")
    lengths = {name: len(value) for name, value in feats.items()}
    if len(set(lengths.values())) != 1 or lengths["out_feats"] != len(weights):
        raise ValueError(
            f"{fn}: out_feats, pos_feats, neg_feats and weights must have one entry per "
            f"layer, got lengths {lengths} and {len(weights)} weights"
        )
    dist = (lambda a, b: (a - b).abs().mean()) if distance == "l1" else \
        (lambda a, b: (a - b).square().mean())
    total = None
    for i, (w, out, pos, neg) in enumerate(zip(weights, out_feats, pos_feats, neg_feats)):
        check_tensor(out, f"out_feats[{i}]", fn)
        check_tensor(pos, f"pos_feats[{i}]", fn)
        if out.ndim < 1:
            raise ValueError(f"{fn}: out_feats[{i}] must have shape (B, ...), got a scalar")
        if pos.shape != out.shape:
            raise ValueError(
                f"{fn}: pos_feats[{i}] must have the shape of out_feats[{i}] {shape_of(out)}, "
                f"got {shape_of(pos)}"
            )
        neg = _as_negatives(neg, out, i, fn).detach()
        d_ap = dist(out, pos.detach())
        d_an = dist(out.unsqueeze(1), neg)  # equal-size negatives: mean over K of the means
        term = d_ap / (d_ap + d_an + eps) if normalize else d_ap / (d_an + eps)
        total = w * term if total is None else total + w * term
    if normalize:
        total = total / sum(weights)
    return total


def cr_warmup_weight(step: int, warmup_steps: int, beta: float) -> float:
    r"""Linear warm-up of the CR weight: ``beta * min(1, step / warmup_steps)``.

    Use as ``loss = l1 + cr_warmup_weight(step, 1000, 0.1) * cr`` so the
    contrastive term starts at 0 while the output is still close to the hazy
    input (see :func:`contrastive_regularization`).  ``warmup_steps=0``
    returns ``beta`` at every step.

    Examples
    --------
    >>> cr_warmup_weight(50, 100, 0.1)
    0.05
    """
    fn = "cr_warmup_weight"
    if int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ValueError(f"{fn}: warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if step < 0:
        raise ValueError(f"{fn}: step must be >= 0, got {step!r}")
    beta = float(beta)
    if warmup_steps == 0:
        return beta
    return beta * min(1.0, float(step) / float(warmup_steps))


class ContrastiveRegularization(nn.Module):
    """Module form of :func:`contrastive_regularization`, optionally owning a frozen encoder.

    Parameters
    ----------
    encoder : nn.Module or callable or None
        ``encoder(x)`` returns a list of feature maps (one per weight).  It is
        frozen (``requires_grad_(False)``) and kept in eval mode, also after
        ``.train()``.  Stored as a submodule so ``.to(device)`` moves it (its
        weights are therefore part of ``state_dict()``).  ``None``: ``forward``
        takes feature lists directly.
    weights, eps, distance, normalize
        As in :func:`contrastive_regularization`.

    Notes
    -----
    With an encoder, ``forward(out, pos, neg)`` takes images: ``out`` and
    ``pos`` of shape ``(B, C, H, W)``; ``neg`` of that shape, ``(B, K, C, H, W)``
    or a list of ``K`` such tensors.  The targets are encoded without
    gradient; gradients flow through the frozen encoder into ``out``.
    """

    def __init__(
        self,
        encoder: nn.Module | Callable | None = None,
        *,
        weights: Sequence[float] = AECR_WEIGHTS,
        eps: float = 1e-7,
        distance: str = "l1",
        normalize: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        self.weights = _check_weights(weights, name)
        _check_distance(distance, name)
        self.eps = float(eps)
        self.distance = distance
        self.normalize = bool(normalize)
        if isinstance(encoder, nn.Module):
            encoder.requires_grad_(False)
            encoder.eval()
        elif encoder is not None and not callable(encoder):
            raise TypeError(f"{name}: encoder must be an nn.Module, a callable or None, "
                            f"got {type(encoder).__name__}")
        self.encoder = encoder

    def train(self, mode: bool = True):
        super().train(mode)
        if isinstance(self.encoder, nn.Module):
            self.encoder.eval()
        return self

    def _encode(self, x: Tensor) -> list[Tensor]:
        feats = self.encoder(x)
        return [feats] if isinstance(feats, Tensor) else list(feats)

    def forward(self, out, pos, neg) -> Tensor:
        if self.encoder is None:
            out_f, pos_f, neg_f = out, pos, neg
        else:
            name = type(self).__name__
            check_tensor(out, "out", name)
            check_tensor(pos, "pos", name)
            if pos.shape != out.shape:
                raise ValueError(f"{name}: pos must have the shape of out {shape_of(out)}, "
                                 f"got {shape_of(pos)}")
            out_f = self._encode(out)
            with torch.no_grad():
                pos_f = self._encode(pos)
                if isinstance(neg, Tensor) and neg.ndim == out.ndim + 1:
                    if neg.shape[0] != out.shape[0] or neg.shape[2:] != out.shape[1:]:
                        raise ValueError(
                            f"{name}: neg must have shape {shape_of(out)} or (B, K, ...) = "
                            f"({out.shape[0]}, K, {', '.join(map(str, out.shape[1:]))}), "
                            f"got {shape_of(neg)}"
                        )
                    b, k = neg.shape[:2]
                    flat = self._encode(neg.reshape(b * k, *neg.shape[2:]))
                    neg_f = [f.reshape(b, k, *f.shape[1:]) for f in flat]
                elif isinstance(neg, Tensor):
                    if neg.shape != out.shape:
                        raise ValueError(f"{name}: neg must have shape {shape_of(out)} or "
                                         f"(B, K, ...), got {shape_of(neg)}")
                    neg_f = self._encode(neg)
                else:
                    per_neg = [self._encode(t) for t in neg]
                    if not per_neg:
                        raise ValueError(f"{name}: neg must not be an empty list")
                    neg_f = [list(layer) for layer in zip(*per_neg)]
        return contrastive_regularization(
            out_f, pos_f, neg_f, weights=self.weights, eps=self.eps,
            distance=self.distance, normalize=self.normalize,
        )

    def extra_repr(self) -> str:
        return (f"weights={self.weights}, eps={self.eps}, distance={self.distance!r}, "
                f"normalize={self.normalize}")
