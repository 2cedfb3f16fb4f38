"""InfoNCE and CUT's PatchNCE (the location contrast of CUT, FastCUT and NLCL).

Conventions (cosine similarity, temperature, ``reduction``): see
:mod:`napari_nlcl.contrastive.losses`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_positive, check_reduction, check_tensor, reduce_loss, shape_of

__all__ = ["InfoNCELoss", "PatchNCELoss", "info_nce", "patch_nce"]


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
    check_tensor(query, "query", fn)
    check_tensor(positive, "positive", fn)
    tau = check_positive(temperature, "temperature", fn)
    check_reduction(reduction, fn)
    if query.ndim != 2:
        raise ValueError(f"{fn}: query must have shape (N, D), got {shape_of(query)}")
    if positive.shape != query.shape:
        raise ValueError(
            f"{fn}: positive must have the shape of query (N, D) = {shape_of(query)}, "
            f"got {shape_of(positive)}"
        )
    n, d = query.shape
    if negatives is not None:
        check_tensor(negatives, "negatives", fn)
        if negatives.ndim != 3 or negatives.shape[0] != n or negatives.shape[2] != d:
            raise ValueError(
                f"{fn}: negatives must have shape (N, K, D) = ({n}, K, {d}), "
                f"got {shape_of(negatives)}"
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
    return reduce_loss(loss, reduction)


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce`; ``forward(query, positive, negatives=None)``."""

    def __init__(self, temperature: float = 0.07, *, reduction: str = "mean", normalize=True):
        super().__init__()
        check_positive(temperature, "temperature", type(self).__name__)
        check_reduction(reduction, type(self).__name__)
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
    keep: Tensor | None = None,
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
    keep : Tensor, optional
        ``(B, N, N)`` bool, with ``negatives="image"`` only: ``keep[b, i, j]``
        False leaves key ``j`` out of query ``i``'s negatives (e.g. likely false
        negatives found by
        :func:`~napari_nlcl.contrastive.samplers.prototype_negative_mask`); the
        positive (the diagonal) always stays.

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
    check_tensor(feat_q, "feat_q", fn)
    check_tensor(feat_k, "feat_k", fn)
    tau = check_positive(temperature, "temperature", fn)
    check_reduction(reduction, fn)
    if feat_q.ndim != 3:
        raise ValueError(f"{fn}: feat_q must have shape (B, N, D), got {shape_of(feat_q)}")
    if feat_k.shape != feat_q.shape:
        raise ValueError(
            f"{fn}: feat_k must have the shape of feat_q (B, N, D) = {shape_of(feat_q)}, "
            f"got {shape_of(feat_k)}"
        )
    if negatives not in ("image", "batch"):
        raise ValueError(f"{fn}: negatives must be 'image' or 'batch', got {negatives!r}")
    b, n, d = feat_q.shape
    if keep is not None and (negatives != "image" or tuple(keep.shape) != (b, n, n) or keep.dtype != torch.bool):
        raise ValueError(f"{fn}: keep must be a bool tensor of shape (B, N, N) = ({b}, {n}, {n}) with "
                         f"negatives='image', got {shape_of(keep)} {keep.dtype} with {negatives!r}")
    if detach_keys:
        feat_k = feat_k.detach()
    if normalize:
        feat_q = F.normalize(feat_q, dim=-1)
        feat_k = F.normalize(feat_k, dim=-1)
    if negatives == "batch":
        feat_q = feat_q.reshape(1, b * n, d)
        feat_k = feat_k.reshape(1, b * n, d)
    logits = torch.bmm(feat_q, feat_k.transpose(1, 2)) / tau  # (G, M, M)
    if keep is not None:
        keep = keep | torch.eye(n, dtype=torch.bool, device=keep.device)
        logits = logits.masked_fill(~keep.to(logits.device), float("-inf"))
    # cross-entropy with the target on the diagonal (logsumexp: stable, and on CPU
    # much cheaper than log_softmax for small inputs)
    loss = (torch.logsumexp(logits, dim=-1) - logits.diagonal(dim1=1, dim2=2)).reshape(b, n)
    return reduce_loss(loss, reduction)


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
        check_positive(temperature, "temperature", name)
        check_reduction(reduction, name)
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
