"""Contrastive losses: InfoNCE, PatchNCE, supervised-contrastive, asymmetric, ratio-type CR.

Every loss is a pure function working on whatever device and dtype its inputs
live on, plus a thin :class:`torch.nn.Module` wrapper that stores the keyword
arguments and calls the function (kornia style; ``module(x) == function(x)``).
Shapes are checked explicitly and a wrong shape raises :class:`ValueError`
naming the expected layout.  No function keeps state between calls.

* :func:`info_nce` / :class:`InfoNCELoss`: generic InfoNCE (image-level or
  domain-wise negatives).
* :func:`patch_nce` / :class:`PatchNCELoss`: CUT / FastCUT, NLCL location contrast.
* :func:`supervised_contrastive` / :class:`SupConLoss`: NLCL layer contrast.
* :func:`asymmetric_layer_contrast` / :class:`AsymmetricLayerContrast`: the
  asymmetric layer contrast of NLCL's journal version (TPAMI 2024).
* :func:`contrastive_regularization` / :class:`ContrastiveRegularization`:
  AECR-Net's ratio-type CR (with :func:`cr_warmup_weight`).
* :func:`lsgan_loss` / :class:`LSGANLoss`: adversarial terms of the recipes.

Conventions
-----------
* Embeddings are compared by cosine similarity: the InfoNCE-type losses
  L2-normalise their inputs along the last axis (``normalize=True``, the
  default).  Normalising features that a projection head has already
  normalised changes nothing, so heads may normalise too.
* Temperatures ``tau`` divide similarities: a lower ``tau`` sharpens the
  softmax, i.e. pulls positives more tightly together.
* ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AECR_WEIGHTS",
    "AsymmetricLayerContrast",
    "ContrastiveRegularization",
    "InfoNCELoss",
    "LSGANLoss",
    "PatchNCELoss",
    "SupConLoss",
    "asymmetric_layer_contrast",
    "contrastive_regularization",
    "cr_warmup_weight",
    "info_nce",
    "lsgan_loss",
    "patch_nce",
    "supervised_contrastive",
]

#: AECR-Net's per-layer weights for the VGG19 relu1_1 ... relu5_1 features.
AECR_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------- helpers
def _check_tensor(x, name: str, fn: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")


def _check_positive(value, name: str, fn: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a positive number, got {value!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{fn}: {name} must be a positive finite number, got {value}")
    return value


def _check_reduction(reduction: str, fn: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


# --------------------------------------------------------------------------- InfoNCE
def info_nce(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.07,
    reduction: str = "mean",
    normalize: bool = True,
) -> Tensor:
    r"""InfoNCE loss (van den Oord et al. 2018; MoCo / SimCLR form).

    For query :math:`q_n`, positive :math:`p_n` and negatives :math:`n_{n,k}`
    (all L2-normalised), with logits :math:`\ell_0 = q_n \cdot p_n / \tau` and
    :math:`\ell_k = q_n \cdot n_{n,k} / \tau`,

    .. math::

        \mathcal{L}_n = -\log \frac{\exp(\ell_0)}
                                   {\exp(\ell_0) + \sum_{k=1}^{K} \exp(\ell_k)},

    i.e. the cross-entropy of the logits ``[l_0, l_1, ..., l_K]`` with the
    positive at index 0.

    Parameters
    ----------
    query : Tensor
        Shape ``(N, D)``.
    positive : Tensor
        Shape ``(N, D)``; ``positive[n]`` is the positive of ``query[n]``.
    negatives : Tensor or None
        Shape ``(N, K, D)``: ``K`` negatives per query.  ``None``: the other
        ``N - 1`` positives of the batch are the negatives, which is the
        standard ``N x N`` cross-entropy ``CE(q p^T / tau, arange(N))``.
    temperature : float
        ``tau > 0``.
    reduction : {"mean", "sum", "none"}
        ``"none"`` returns the per-query loss, shape ``(N,)``.
    normalize : bool
        L2-normalise ``query``, ``positive`` and ``negatives`` along the last
        axis first (default), so the logits are cosine similarities.

    Returns
    -------
    Tensor
        Scalar, or ``(N,)`` for ``reduction="none"``.

    Examples
    --------
    >>> q = torch.tensor([[1.0, 0.0]])
    >>> loss = info_nce(q, q, torch.tensor([[[0.0, 1.0]]]), temperature=0.5)
    >>> torch.allclose(loss, torch.log1p(torch.exp(torch.tensor(-2.0))))
    True
    """
    fn = "info_nce"
    _check_tensor(query, "query", fn)
    _check_tensor(positive, "positive", fn)
    tau = _check_positive(temperature, "temperature", fn)
    _check_reduction(reduction, fn)
    if query.ndim != 2:
        raise ValueError(f"{fn}: query must have shape (N, D), got {_shape(query)}")
    if positive.shape != query.shape:
        raise ValueError(
            f"{fn}: positive must have the shape of query (N, D) = {_shape(query)}, "
            f"got {_shape(positive)}"
        )
    n, d = query.shape
    if negatives is not None:
        _check_tensor(negatives, "negatives", fn)
        if negatives.ndim != 3 or negatives.shape[0] != n or negatives.shape[2] != d:
            raise ValueError(
                f"{fn}: negatives must have shape (N, K, D) = ({n}, K, {d}), "
                f"got {_shape(negatives)}"
            )
    if normalize:
        query = F.normalize(query, dim=-1)
        positive = F.normalize(positive, dim=-1)
    if negatives is None:
        # positive logit on the diagonal == "index 0 with the diagonal masked out"
        logits = query @ positive.transpose(0, 1) / tau
        loss = torch.logsumexp(logits, dim=1) - logits.diagonal()
    else:
        if normalize:
            negatives = F.normalize(negatives, dim=-1)
        l_pos = (query * positive).sum(-1, keepdim=True)
        l_neg = torch.bmm(negatives, query.unsqueeze(-1)).squeeze(-1)  # (N, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / tau
        loss = torch.logsumexp(logits, dim=1) - logits[:, 0]
    return _reduce(loss, reduction)


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce`; ``forward(query, positive, negatives=None)``."""

    def __init__(self, temperature: float = 0.07, *, reduction: str = "mean", normalize=True):
        super().__init__()
        _check_positive(temperature, "temperature", type(self).__name__)
        _check_reduction(reduction, type(self).__name__)
        self.temperature = float(temperature)
        self.reduction = reduction
        self.normalize = bool(normalize)

    def forward(self, query: Tensor, positive: Tensor, negatives: Tensor | None = None) -> Tensor:
        return info_nce(
            query, positive, negatives,
            temperature=self.temperature, reduction=self.reduction, normalize=self.normalize,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- PatchNCE
def patch_nce(
    feat_q: Tensor,
    feat_k: Tensor,
    *,
    temperature: float = 0.07,
    negatives: str = "image",
    detach_keys: bool = True,
    normalize: bool = True,
    reduction: str = "mean",
) -> Tensor:
    r"""PatchNCE loss of CUT (Park et al., ECCV 2020).

    ``feat_q[b, i]`` is the embedding of patch ``i`` of the *output* image
    ``b``; ``feat_k[b, i]`` is the embedding of the *source* image at the same
    location.  The key at the same location is the positive; the keys at the
    other locations are the negatives:

    .. math::

        \mathcal{L}_{b,i} = -\log \frac{\exp(q_{b,i} \cdot k_{b,i} / \tau)}
            {\sum_{j \in \mathcal{N}(b)} \exp(q_{b,i} \cdot k_{j} / \tau)},

    where the sum runs over the ``N`` keys of image ``b`` (positive included)
    for ``negatives="image"``, or over all ``B * N`` keys of the batch for
    ``negatives="batch"``.

    CUT concatenates ``[l_pos, l_neg]`` and fills the diagonal of ``l_neg``
    (the positive again) with ``-10 / tau``.  Here each row of ``q k^T / tau``
    is used directly with the target on its diagonal: the positive appears
    exactly once in the softmax, as if the masked entry were ``-inf``; CUT's
    version differs by an ``exp(-10 / tau)`` (about ``1e-62``) term.

    Parameters
    ----------
    feat_q : Tensor
        Query patch embeddings, shape ``(B, N, D)`` (from the output image).
    feat_k : Tensor
        Key patch embeddings at the same ``N`` locations, shape ``(B, N, D)``
        (from the source image).
    temperature : float
        ``tau > 0`` (CUT: 0.07).
    negatives : {"image", "batch"}
        ``"image"`` (CUT default): the ``N - 1`` other patches of the same
        image.  ``"batch"`` (CUT's ``nce_includes_all_negatives_from_minibatch``,
        used in single-image mode): the ``B * N - 1`` other patches of the
        whole batch.  Both agree for ``B = 1``.
    detach_keys : bool
        Stop the gradient through ``feat_k`` (default, as in CUT: the source
        is the target of the correspondence).
    normalize : bool
        L2-normalise both inputs along ``D`` first (CUT's MLP head does this).
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over all ``B * N`` queries; ``"none"`` returns
        shape ``(B, N)``.

    Returns
    -------
    Tensor
        Scalar, or ``(B, N)`` for ``reduction="none"``.

    Examples
    --------
    >>> k = torch.eye(4).expand(2, 4, 4)     # 2 images, 4 orthogonal patches
    >>> float(patch_nce(k, k, temperature=0.01)) < 1e-6
    True
    """
    fn = "patch_nce"
    _check_tensor(feat_q, "feat_q", fn)
    _check_tensor(feat_k, "feat_k", fn)
    tau = _check_positive(temperature, "temperature", fn)
    _check_reduction(reduction, fn)
    if feat_q.ndim != 3:
        raise ValueError(f"{fn}: feat_q must have shape (B, N, D), got {_shape(feat_q)}")
    if feat_k.shape != feat_q.shape:
        raise ValueError(
            f"{fn}: feat_k must have the shape of feat_q (B, N, D) = {_shape(feat_q)}, "
            f"got {_shape(feat_k)}"
        )
    if negatives not in ("image", "batch"):
        raise ValueError(f"{fn}: negatives must be 'image' or 'batch', got {negatives!r}")
    b, n, d = feat_q.shape
    if detach_keys:
        feat_k = feat_k.detach()
    if normalize:
        feat_q = F.normalize(feat_q, dim=-1)
        feat_k = F.normalize(feat_k, dim=-1)
    if negatives == "batch":
        feat_q = feat_q.reshape(1, b * n, d)
        feat_k = feat_k.reshape(1, b * n, d)
    logits = torch.bmm(feat_q, feat_k.transpose(1, 2)) / tau  # (G, M, M)
    # cross-entropy with the target on the diagonal (logsumexp: stable, and on CPU
    # much cheaper than log_softmax for small inputs)
    loss = (torch.logsumexp(logits, dim=-1) - logits.diagonal(dim1=1, dim2=2)).reshape(b, n)
    return _reduce(loss, reduction)


class PatchNCELoss(nn.Module):
    """Module form of :func:`patch_nce`; ``forward(feat_q, feat_k)``."""

    def __init__(
        self,
        temperature: float = 0.07,
        *,
        negatives: str = "image",
        detach_keys: bool = True,
        normalize: bool = True,
        reduction: str = "mean",
    ):
        super().__init__()
        name = type(self).__name__
        _check_positive(temperature, "temperature", name)
        _check_reduction(reduction, name)
        if negatives not in ("image", "batch"):
            raise ValueError(f"{name}: negatives must be 'image' or 'batch', got {negatives!r}")
        self.temperature = float(temperature)
        self.negatives = negatives
        self.detach_keys = bool(detach_keys)
        self.normalize = bool(normalize)
        self.reduction = reduction

    def forward(self, feat_q: Tensor, feat_k: Tensor) -> Tensor:
        return patch_nce(
            feat_q, feat_k, temperature=self.temperature, negatives=self.negatives,
            detach_keys=self.detach_keys, normalize=self.normalize, reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, negatives={self.negatives!r}, "
                f"detach_keys={self.detach_keys}")


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
    _check_tensor(features, "features", fn)
    tau = _check_positive(temperature, "temperature", fn)
    tau_b = tau if base_temperature is None else _check_positive(
        base_temperature, "base_temperature", fn)
    _check_reduction(reduction, fn)
    if features.ndim == 2:
        feats = features.unsqueeze(1)
    elif features.ndim == 3:
        feats = features
    else:
        raise ValueError(
            f"{fn}: features must have shape (N, D) or (N, V, D), got {_shape(features)}"
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
            raise ValueError(f"{fn}: labels must have shape (N,) = ({n},), got {_shape(labels)}")
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
        _check_positive(temperature, "temperature", name)
        if base_temperature is not None:
            _check_positive(base_temperature, "base_temperature", name)
        _check_reduction(reduction, name)
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
    _check_tensor(b_emb, "b_emb", fn)
    _check_tensor(r_emb, "r_emb", fn)
    t_b = _check_positive(tau_bg, "tau_bg", fn)
    t_r = _check_positive(tau_rain, "tau_rain", fn)
    _check_reduction(reduction, fn)
    if b_emb.ndim != 3 or b_emb.shape[1] < 2:
        raise ValueError(
            f"{fn}: b_emb must have shape (B, 1 + P, D) with P >= 1 "
            f"(anchor followed by its positives), got {_shape(b_emb)}"
        )
    if (r_emb.ndim != 3 or r_emb.shape[1] < 2 or r_emb.shape[0] != b_emb.shape[0]
            or r_emb.shape[2] != b_emb.shape[2]):
        raise ValueError(
            f"{fn}: r_emb must have shape (B, 1 + P', D) = ({b_emb.shape[0]}, 1 + P', "
            f"{b_emb.shape[2]}) with P' >= 1, got {_shape(r_emb)}"
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
    return _reduce(loss, reduction)


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
        _check_positive(tau_bg, "tau_bg", name)
        _check_positive(tau_rain, "tau_rain", name)
        _check_reduction(reduction, name)
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
            f"{_shape(out)} or {expected}, got {_shape(neg)}"
        )
    if isinstance(neg, Sequence) and len(neg) > 0 and all(isinstance(t, Tensor) for t in neg):
        for k, t in enumerate(neg):
            if t.shape != out.shape:
                raise ValueError(
                    f"{fn}: neg_feats[{layer}][{k}] must have the shape of out_feats[{layer}] "
                    f"{_shape(out)}, got {_shape(t)}"
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
        _check_tensor(out, f"out_feats[{i}]", fn)
        _check_tensor(pos, f"pos_feats[{i}]", fn)
        if out.ndim < 1:
            raise ValueError(f"{fn}: out_feats[{i}] must have shape (B, ...), got a scalar")
        if pos.shape != out.shape:
            raise ValueError(
                f"{fn}: pos_feats[{i}] must have the shape of out_feats[{i}] {_shape(out)}, "
                f"got {_shape(pos)}"
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
            _check_tensor(out, "out", name)
            _check_tensor(pos, "pos", name)
            if pos.shape != out.shape:
                raise ValueError(f"{name}: pos must have the shape of out {_shape(out)}, "
                                 f"got {_shape(pos)}")
            out_f = self._encode(out)
            with torch.no_grad():
                pos_f = self._encode(pos)
                if isinstance(neg, Tensor) and neg.ndim == out.ndim + 1:
                    if neg.shape[0] != out.shape[0] or neg.shape[2:] != out.shape[1:]:
                        raise ValueError(
                            f"{name}: neg must have shape {_shape(out)} or (B, K, ...) = "
                            f"({out.shape[0]}, K, {', '.join(map(str, out.shape[1:]))}), "
                            f"got {_shape(neg)}"
                        )
                    b, k = neg.shape[:2]
                    flat = self._encode(neg.reshape(b * k, *neg.shape[2:]))
                    neg_f = [f.reshape(b, k, *f.shape[1:]) for f in flat]
                elif isinstance(neg, Tensor):
                    if neg.shape != out.shape:
                        raise ValueError(f"{name}: neg must have shape {_shape(out)} or "
                                         f"(B, K, ...), got {_shape(neg)}")
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


# --------------------------------------------------------------------------- LSGAN
def lsgan_loss(pred: Tensor | Sequence[Tensor], target_is_real: bool) -> Tensor:
    r"""Least-squares GAN loss (Mao et al. 2017): ``mean((pred - c)^2)``, ``c = 1`` or ``0``.

    Parameters
    ----------
    pred : Tensor or sequence of Tensor
        Discriminator output(s) of any shape; for a list (multi-scale
        discriminators) the mean of the per-output losses.
    target_is_real : bool
        ``True``: target 1 (real, or the generator's term); ``False``: target 0.

    Returns
    -------
    Tensor
        Scalar.

    Examples
    --------
    >>> float(lsgan_loss(torch.zeros(2, 1, 4, 4), True))
    1.0
    """
    fn = "lsgan_loss"
    if not isinstance(target_is_real, bool):
        raise TypeError(f"{fn}: target_is_real must be a bool, got {type(target_is_real).__name__}")
    if isinstance(pred, Tensor):
        preds = [pred]
    elif isinstance(pred, Sequence) and len(pred) > 0:
        preds = list(pred)
    else:
        raise TypeError(f"{fn}: pred must be a tensor or a non-empty list of tensors")
    losses = []
    for i, p in enumerate(preds):
        _check_tensor(p, f"pred[{i}]", fn)
        if p.numel() == 0:
            raise ValueError(f"{fn}: pred[{i}] is empty, shape {_shape(p)}")
        target = torch.ones_like(p) if target_is_real else torch.zeros_like(p)
        losses.append(F.mse_loss(p, target))
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


class LSGANLoss(nn.Module):
    """Module form of :func:`lsgan_loss`; ``forward(pred, target_is_real)``."""

    def forward(self, pred: Tensor | Sequence[Tensor], target_is_real: bool) -> Tensor:
        return lsgan_loss(pred, target_is_real)
