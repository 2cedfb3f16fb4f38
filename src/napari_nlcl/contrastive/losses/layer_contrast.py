"""Layer contrast: supervised-contrastive (NLCL) and its asymmetric journal version.

Conventions (cosine similarity, temperature, ``reduction``): see
:mod:`napari_nlcl.contrastive.losses`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_positive, check_reduction, check_tensor, reduce_loss, shape_of

__all__ = [
    "AsymmetricLayerContrast",
    "SupConLoss",
    "asymmetric_layer_contrast",
    "supervised_contrastive",
]


# --------------------------------------------------------------------------- SupCon
def supervised_contrastive(
    features: Tensor,
    labels: Tensor | Sequence[int] | None = None,
    *,
    temperature: float = 0.07,
    base_temperature: float | None = None,
    normalize: bool = True,
    reduction: str = "mean",
) -> Tensor:
    r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020, :math:`\mathcal{L}^{sup}_{out}`).

    All ``M = N * V`` embeddings are anchors.  For anchor :math:`i` with
    positives :math:`P(i)` (the other embeddings with the same label, other
    views of the same sample included) and contrast set :math:`A(i)` (every
    embedding but :math:`i`),

    .. math::

        \mathcal{L}_i = -\frac{\tau}{\tau_b} \frac{1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)}.

    Anchors without any positive are skipped: they are left out of the mean
    (and get a loss of 0 with ``reduction="none"``), so the result never is
    NaN; if no anchor has a positive the loss is 0 (still attached to the
    graph).

    For NLCL's layer contrast, stack background and rain patch embeddings and
    label them ``B = 1``, ``R = 0``.

    Parameters
    ----------
    features : Tensor
        ``(N, D)`` or ``(N, V, D)`` with ``V`` views per sample.
    labels : Tensor or sequence of int or None
        Shape ``(N,)``, integer (or bool) class labels.  ``None``: each sample
        is its own class (SimCLR; needs ``V >= 2`` to have positives).
    temperature : float
        ``tau > 0``.
    base_temperature : float or None
        ``tau_b``; ``None`` means ``tau_b = tau`` (the factor is 1).
    normalize : bool
        L2-normalise the features along ``D`` first (default).
    reduction : {"mean", "sum", "none"}
        ``"mean"``/``"sum"`` over anchors that have a positive; ``"none"``
        returns ``(N,)`` or ``(N, V)`` per-anchor losses.

    Returns
    -------
    Tensor
        Scalar, or the per-anchor losses for ``reduction="none"``.

    Examples
    --------
    >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> float(supervised_contrastive(z, torch.tensor([1, 1, 0, 0]), temperature=0.01)) < 1e-6
    True
    """
    fn = "supervised_contrastive"
    check_tensor(features, "features", fn)
    tau = check_positive(temperature, "temperature", fn)
    tau_b = tau if base_temperature is None else check_positive(
        base_temperature, "base_temperature", fn)
    check_reduction(reduction, fn)
    if features.ndim == 2:
        feats = features.unsqueeze(1)
    elif features.ndim == 3:
        feats = features
    else:
        raise ValueError(
            f"{fn}: features must have shape (N, D) or (N, V, D), got {shape_of(features)}"
        )
    n, v, d = feats.shape
    device = features.device
    if labels is None:
        labels = torch.arange(n, device=device)
    else:
        labels = torch.as_tensor(labels, device=device)
        if labels.is_floating_point() or labels.is_complex():
            raise TypeError(f"{fn}: labels must be integers, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"{fn}: labels must have shape (N,) = ({n},), got {shape_of(labels)}")
    m = n * v
    z = feats.reshape(m, d)  # sample-major: row n * V + v
    if normalize:
        z = F.normalize(z, dim=-1)
    lab = labels.repeat_interleave(v)
    self_mask = torch.eye(m, dtype=torch.bool, device=device)
    pos_mask = (lab[:, None] == lab[None, :]) & ~self_mask
    valid = pos_mask.any(dim=1)

    per_anchor = z.new_zeros(m)
    if bool(valid.any()):
        # only rows with a positive: their contrast set is non-empty, so no inf/NaN
        logits = z[valid] @ z.transpose(0, 1) / tau  # (A, M)
        denom = torch.logsumexp(logits.masked_fill(self_mask[valid], float("-inf")), dim=1)
        log_prob = logits - denom.unsqueeze(1)
        pos = pos_mask[valid].to(log_prob.dtype)
        mean_log_prob_pos = (log_prob * pos).sum(1) / pos.sum(1)
        per_anchor = per_anchor.masked_scatter(valid, -(tau / tau_b) * mean_log_prob_pos)
    if reduction == "none":
        return per_anchor.reshape(n, v) if features.ndim == 3 else per_anchor
    if not bool(valid.any()):
        return (features * 0).sum()
    total = per_anchor.sum()
    return total / valid.sum() if reduction == "mean" else total


class SupConLoss(nn.Module):
    """Module form of :func:`supervised_contrastive`; ``forward(features, labels=None)``."""

    def __init__(
        self,
        temperature: float = 0.07,
        *,
        base_temperature: float | None = None,
        normalize: bool = True,
        reduction: str = "mean",
    ):
        super().__init__()
        name = type(self).__name__
        check_positive(temperature, "temperature", name)
        if base_temperature is not None:
            check_positive(base_temperature, "base_temperature", name)
        check_reduction(reduction, name)
        self.temperature = float(temperature)
        self.base_temperature = None if base_temperature is None else float(base_temperature)
        self.normalize = bool(normalize)
        self.reduction = reduction

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        return supervised_contrastive(
            features, labels, temperature=self.temperature,
            base_temperature=self.base_temperature, normalize=self.normalize,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}"


# --------------------------------------------------------------------------- asymmetric
def _multi_positive_nce(anchor: Tensor, positives: Tensor, negatives: Tensor, tau: float):
    """Per-item ``-mean_p log softmax`` over ``[positives, negatives]``; all normalised."""
    s_pos = torch.bmm(positives, anchor.unsqueeze(-1)).squeeze(-1) / tau  # (B, k)
    s_neg = torch.bmm(negatives, anchor.unsqueeze(-1)).squeeze(-1) / tau  # (B, M)
    denom = torch.logsumexp(torch.cat([s_pos, s_neg], dim=1), dim=1, keepdim=True)
    return -(s_pos - denom).mean(dim=1)  # (B,)


def asymmetric_layer_contrast(
    b_emb: Tensor,
    r_emb: Tensor,
    *,
    k_bg: int = 8,
    k_rain: int = 4,
    tau_bg: float = 0.07,
    tau_rain: float = 0.05,
    weight_bg: float = 1.0,
    weight_rain: float = 1.0,
    normalize: bool = True,
    reduction: str = "mean",
) -> Tensor:
    r"""Asymmetric layer contrast of NLCL's journal version (Chang et al., TPAMI 2024).

    NLCL separates a rainy image into background ``B`` and rain ``R`` and
    contrasts the two layers: non-local self-similar patches of the same
    layer are positives, the patches of the other layer are negatives.  The
    journal version treats the layers *asymmetrically*: rain streaks are
    simple, repetitive structures whose patches lie near a low-dimensional
    set, whereas background patches span the much richer set of natural
    image patches.  The rain anchor therefore gets a tighter positive set
    (its ``k_rain < k_bg`` nearest self-similar patches) and a lower
    temperature, so rain embeddings are pulled together more tightly than
    background embeddings.

    With :math:`a` the anchor, :math:`P_k` its first ``k`` positives and
    :math:`\mathcal{N}` the other layer's embeddings (all normalised),

    .. math::

        \ell(a, P_k, \mathcal{N}; \tau) = -\frac{1}{k} \sum_{p \in P_k}
            \log \frac{\exp(a \cdot p / \tau)}
                      {\sum_{c \in P_k \cup \mathcal{N}} \exp(a \cdot c / \tau)},

    .. math::

        \mathcal{L} = w_B\, \ell(b_0, b_{1..k_B}, \{r_j\}; \tau_B)
                    + w_R\, \ell(r_0, r_{1..k_R}, \{b_j\}; \tau_R),

    averaged over the batch.  Positives beyond the first ``k`` of a layer
    are neither positives nor negatives of that layer's anchor (they are
    still negatives of the other anchor).  With ``k_bg = k_rain = P``,
    ``tau_bg = tau_rain`` and ``weight_bg = weight_rain = 1`` each term is
    exactly the :func:`supervised_contrastive` loss of the anchor in the set
    ``[b_emb, r_emb]`` labelled ``B = 1``, ``R = 0``: the symmetric NLCL
    layer contrast.

    Parameters
    ----------
    b_emb : Tensor
        ``(B, 1 + P, D)``: per image, a background anchor followed by its
        ``P`` self-similar background patches, most similar first.
    r_emb : Tensor
        ``(B, 1 + P', D)``: the same for the rain layer (``P'`` may differ).
    k_bg, k_rain : int
        Number of positives used for each anchor, ``1 <= k_bg <= P`` and
        ``1 <= k_rain <= P'``.  Defaults 8 and 4: the rain layer gets the
        tighter (nearer, fewer) positive set.
    tau_bg, tau_rain : float
        Temperatures; default 0.07 (NLCL) for the background and 0.05 for the
        rain layer (stronger pull).  At a configuration where all of an
        anchor's similarities are equal, the gradient on its positives scales
        exactly as ``1 / tau``.
    weight_bg, weight_rain : float
        Weights of the two anchor terms.
    normalize : bool
        L2-normalise the embeddings along ``D`` first (default).
    reduction : {"mean", "sum", "none"}
        Over the batch; ``"none"`` returns the per-image loss ``(B,)``.

    Returns
    -------
    Tensor
        Scalar, or ``(B,)`` for ``reduction="none"``.
    """
    fn = "asymmetric_layer_contrast"
    check_tensor(b_emb, "b_emb", fn)
    check_tensor(r_emb, "r_emb", fn)
    t_b = check_positive(tau_bg, "tau_bg", fn)
    t_r = check_positive(tau_rain, "tau_rain", fn)
    check_reduction(reduction, fn)
    if b_emb.ndim != 3 or b_emb.shape[1] < 2:
        raise ValueError(
            f"{fn}: b_emb must have shape (B, 1 + P, D) with P >= 1 "
            f"(anchor followed by its positives), got {shape_of(b_emb)}"
        )
    if (r_emb.ndim != 3 or r_emb.shape[1] < 2 or r_emb.shape[0] != b_emb.shape[0]
            or r_emb.shape[2] != b_emb.shape[2]):
        raise ValueError(
            f"{fn}: r_emb must have shape (B, 1 + P', D) = ({b_emb.shape[0]}, 1 + P', "
            f"{b_emb.shape[2]}) with P' >= 1, got {shape_of(r_emb)}"
        )
    p_b, p_r = b_emb.shape[1] - 1, r_emb.shape[1] - 1
    for name, k, p in (("k_bg", k_bg, p_b), ("k_rain", k_rain, p_r)):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= p:
            raise ValueError(f"{fn}: {name} must be an integer in [1, {p}] "
                             f"(the number of positives given), got {k!r}")
    if normalize:
        b_emb = F.normalize(b_emb, dim=-1)
        r_emb = F.normalize(r_emb, dim=-1)
    loss_b = _multi_positive_nce(b_emb[:, 0], b_emb[:, 1:1 + k_bg], r_emb, t_b)
    loss_r = _multi_positive_nce(r_emb[:, 0], r_emb[:, 1:1 + k_rain], b_emb, t_r)
    loss = float(weight_bg) * loss_b + float(weight_rain) * loss_r
    return reduce_loss(loss, reduction)


class AsymmetricLayerContrast(nn.Module):
    """Module form of :func:`asymmetric_layer_contrast`; ``forward(b_emb, r_emb)``."""

    def __init__(
        self,
        *,
        k_bg: int = 8,
        k_rain: int = 4,
        tau_bg: float = 0.07,
        tau_rain: float = 0.05,
        weight_bg: float = 1.0,
        weight_rain: float = 1.0,
        normalize: bool = True,
        reduction: str = "mean",
    ):
        super().__init__()
        name = type(self).__name__
        check_positive(tau_bg, "tau_bg", name)
        check_positive(tau_rain, "tau_rain", name)
        check_reduction(reduction, name)
        for kname, k in (("k_bg", k_bg), ("k_rain", k_rain)):
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"{name}: {kname} must be a positive integer, got {k!r}")
        self.k_bg, self.k_rain = k_bg, k_rain
        self.tau_bg, self.tau_rain = float(tau_bg), float(tau_rain)
        self.weight_bg, self.weight_rain = float(weight_bg), float(weight_rain)
        self.normalize = bool(normalize)
        self.reduction = reduction

    def forward(self, b_emb: Tensor, r_emb: Tensor) -> Tensor:
        return asymmetric_layer_contrast(
            b_emb, r_emb, k_bg=self.k_bg, k_rain=self.k_rain, tau_bg=self.tau_bg,
            tau_rain=self.tau_rain, weight_bg=self.weight_bg, weight_rain=self.weight_rain,
            normalize=self.normalize, reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (f"k_bg={self.k_bg}, k_rain={self.k_rain}, tau_bg={self.tau_bg}, "
                f"tau_rain={self.tau_rain}")
