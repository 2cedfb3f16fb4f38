"""HCSC-style prototype-aware negative selection and the small seeded k-means it uses."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_generator, check_index_tensor, check_int, check_positive_index

__all__ = ["KMeansResult", "PrototypeSelection", "kmeans", "prototype_negative_mask"]


@dataclass(frozen=True)
class KMeansResult:
    """Output of :func:`kmeans`.

    Attributes
    ----------
    labels : Tensor
        ``(N,)`` long cluster index of each row, in ``[0, k)``.
    centroids : Tensor
        ``(k, D)`` unit-norm cluster centres (``k`` after clamping to ``N``).
    """

    labels: Tensor
    centroids: Tensor


@dataclass(frozen=True)
class PrototypeSelection:
    """Output of :func:`prototype_negative_mask`.

    Attributes
    ----------
    negative_mask : Tensor
        ``(M, N)`` bool, True where column ``j`` is a kept negative for anchor
        row ``m`` (never the anchor itself, never a positive).
    positive_mask : Tensor
        ``(M, N)`` bool, True where ``j`` is a positive of anchor ``m``: its
        ``positive_index`` and, with ``enrich_positives=True``, the other
        members of its finest-level prototype. Never the anchor itself.
    assignments : Tensor
        ``(G, N)`` long cluster labels, one row per granularity, in the
        order of ``num_clusters``.
    num_clusters : tuple of int
        Effective number of clusters per granularity (clamped to ``N``).
    anchors : Tensor
        ``(M,)`` long row index (into the embeddings) of each anchor.
    """

    negative_mask: Tensor
    positive_mask: Tensor
    assignments: Tensor
    num_clusters: tuple[int, ...]
    anchors: Tensor


# --------------------------------------------------------------------------
# 7. HCSC prototype-aware selection
# --------------------------------------------------------------------------


def _check_embeddings(x: Any, fn: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: embeddings must be a torch.Tensor of shape (N, D), "
                        f"got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{fn}: embeddings must have shape (N, D) with N, D >= 1, got "
                         f"{tuple(x.shape)}; flatten patch embeddings with x.reshape(-1, D)")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: embeddings must be floating point, got {x.dtype}; pass x.float()")


def kmeans(
    x: Tensor,
    k: int,
    *,
    generator: torch.Generator,
    iters: int = 10,
) -> KMeansResult:
    """Seeded spherical k-means (cosine similarity on L2-normalised rows).

    k-means++ initialisation (the first centre uniform, each next one drawn
    with probability proportional to the squared cosine distance
    ``(1 - cos)^2`` to the nearest chosen centre; uniformly among the
    remaining rows when all of them coincide with a centre), then Lloyd
    iterations: assign each row to the most similar centre, set each centre
    to the normalised mean of its members (an empty cluster keeps its
    centre). Stops early when the assignment no longer changes.

    Parameters
    ----------
    x : Tensor
        ``(N, D)`` floating point rows (half precision runs in float32).
        Not differentiated (runs on detached values).
    k : int
        Number of clusters, ``>= 1``. ``k > N`` is clamped to ``N`` (every
        row can then be its own cluster).
    generator : torch.Generator
        Source of randomness for the initialisation.
    iters : int, optional
        Maximum number of Lloyd iterations (``0``: assign to the initial
        centres).

    Returns
    -------
    KMeansResult
        ``labels (N,)`` long, ``centroids (min(k, N), D)`` unit norm.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[1., 0.], [1., .01], [0., 1.], [.01, 1.]])
    >>> lab = kmeans(x, 2, generator=torch.Generator().manual_seed(0)).labels
    >>> bool(lab[0] == lab[1]), bool(lab[2] == lab[3]), bool(lab[0] != lab[2])
    (True, True, True)
    """
    fn = "kmeans"
    _check_embeddings(x, fn)
    k = check_int(k, "k", fn, minimum=1)
    iters = check_int(iters, "iters", fn, minimum=0)
    gen = check_generator(generator, fn)
    n = x.shape[0]
    k = min(k, n)
    with torch.no_grad():
        work = x.dtype if x.element_size() >= 4 else torch.float32
        z = F.normalize(x.detach().to(work), dim=1)
        # k-means++ initialisation
        first = torch.randint(n, (1,), generator=gen, device=gen.device).to(z.device)
        chosen = [first]
        taken = torch.zeros(n, dtype=torch.bool, device=z.device)
        taken[first] = True
        d2 = (1 - z @ z[first].T).squeeze(1).clamp_min(0).square()
        for _ in range(1, k):
            weights = d2.masked_fill(taken, 0)
            if not bool(weights.sum() > 0):
                weights = (~taken).to(work)
            nxt = torch.multinomial(weights.to(gen.device), 1, generator=gen).to(z.device)
            chosen.append(nxt)
            taken[nxt] = True
            d2 = torch.minimum(d2, (1 - z @ z[nxt].T).squeeze(1).clamp_min(0).square())
        centroids = z[torch.cat(chosen)]
        labels = (z @ centroids.T).argmax(1)
        for _ in range(iters):
            sums = torch.zeros_like(centroids).index_add_(0, labels, z)
            counts = torch.bincount(labels, minlength=k)
            centroids = torch.where((counts > 0)[:, None], F.normalize(sums, dim=1), centroids)
            new = (z @ centroids.T).argmax(1)
            if torch.equal(new, labels):
                break
            labels = new
    return KMeansResult(labels=labels, centroids=centroids)


def prototype_negative_mask(
    embeddings: Tensor,
    *,
    num_clusters: int | Sequence[int] = (4, 8),
    generator: torch.Generator,
    iters: int = 10,
    rule: Literal["all", "any"] = "all",
    anchors: Tensor | None = None,
    positive_index: Tensor | None = None,
    enrich_positives: bool = False,
) -> PrototypeSelection:
    """Prototype-aware negative selection (simplified HCSC).

    HCSC (Guo et al., CVPR 2022) clusters the embeddings hierarchically and
    avoids using as negatives the candidates that share the anchor's
    prototypes (likely the same semantic class: false negatives). Here:
    :func:`kmeans` runs once per granularity in ``num_clusters`` on the
    L2-normalised embeddings, and candidate ``j`` is dropped as a negative of
    anchor ``i`` when it shares ``i``'s cluster at **every** granularity
    (``rule="all"``: near-duplicates only) or at **any** granularity
    (``rule="any"``: everything in the anchor's coarsest prototypes). HCSC's
    soft, probability-based selection is replaced by this hard rule.

    Parameters
    ----------
    embeddings : Tensor
        ``(N, D)`` floating point candidate embeddings (anchors are rows of
        it). Not differentiated.
    num_clusters : int or sequence of int, optional
        Clusters per granularity; each is clamped to ``N``.
    generator : torch.Generator
        Randomness for the k-means initialisations (consumed in order).
    iters : int, optional
        Lloyd iterations per granularity.
    rule : {"all", "any"}, optional
        When a shared prototype drops a negative (see above).
    anchors : Tensor, optional
        ``(M,)`` integer rows that are anchors; default all ``N`` rows.
    positive_index : Tensor, optional
        ``(M,)`` column of each anchor's positive (e.g. its other view);
        it is never dropped as a positive: it is always in ``positive_mask``
        and never in ``negative_mask``, whatever the clusters say.
    enrich_positives : bool, optional
        Also mark as positives the other members of the anchor's prototype at
        the finest granularity (the largest effective ``num_clusters``).

    Returns
    -------
    PrototypeSelection
        ``negative_mask (M, N)``, ``positive_mask (M, N)``, ``assignments
        (G, N)``, effective ``num_clusters`` and ``anchors (M,)``. The anchor
        itself is in neither mask; positives take precedence over negatives.

    Raises
    ------
    ValueError
        On bad shapes, an empty ``num_clusters``, an unknown ``rule``, or
        out-of-range indices.
    TypeError
        On non-tensor / non-integer inputs or a missing generator.

    Examples
    --------
    >>> import torch
    >>> e = torch.tensor([[1., 0.], [1., .01], [0., 1.], [.01, 1.]])
    >>> g = torch.Generator().manual_seed(0)
    >>> sel = prototype_negative_mask(e, num_clusters=(2,), generator=g)
    >>> sel.negative_mask[0]
    tensor([False, False,  True,  True])
    """
    fn = "prototype_negative_mask"
    _check_embeddings(embeddings, fn)
    check_generator(generator, fn)
    if rule not in ("all", "any"):
        raise ValueError(f"{fn}: rule must be 'all' (drop near-duplicates) or 'any' (drop the "
                         f"anchor's whole prototype), got {rule!r}")
    if isinstance(num_clusters, numbers.Integral) and not isinstance(num_clusters, bool):
        num_clusters = (num_clusters,)
    if not isinstance(num_clusters, Sequence) or len(num_clusters) == 0:
        raise ValueError(f"{fn}: num_clusters must be an int or a non-empty sequence of ints, "
                         f"e.g. (4, 8), got {num_clusters!r}")
    ks = [check_int(kk, "num_clusters[i]", fn, minimum=1) for kk in num_clusters]
    n = embeddings.shape[0]
    dev = embeddings.device
    if anchors is None:
        anchors_t = torch.arange(n, device=dev)
    else:
        check_index_tensor(anchors, "anchors", fn, "of shape (M,)")
        if anchors.ndim != 1:
            raise ValueError(f"{fn}: anchors must have shape (M,), got {tuple(anchors.shape)}")
        anchors_t = anchors.to(device=dev, dtype=torch.long)
        if anchors_t.numel() and (bool((anchors_t < 0).any()) or bool((anchors_t >= n).any())):
            raise ValueError(f"{fn}: anchors must lie in [0, {n})")
    pos_idx = (None if positive_index is None
               else check_positive_index(positive_index, anchors_t, n, fn))

    results = [kmeans(embeddings, kk, generator=generator, iters=iters) for kk in ks]
    assignments = torch.stack([r.labels for r in results])  # (G, N)
    effective = tuple(r.centroids.shape[0] for r in results)
    m = anchors_t.shape[0]
    rows = torch.arange(m, device=dev)
    same = assignments[:, anchors_t, None] == assignments[:, None, :]  # (G, M, N)
    drop = same.all(0) if rule == "all" else same.any(0)
    negative = ~drop
    positive = torch.zeros(m, n, dtype=torch.bool, device=dev)
    if enrich_positives:
        finest = max(range(len(effective)), key=lambda g: (effective[g], g))
        positive |= same[finest]
    if pos_idx is not None:
        positive[rows, pos_idx] = True
    positive[rows, anchors_t] = False
    negative[rows, anchors_t] = False
    negative &= ~positive
    return PrototypeSelection(
        negative_mask=negative,
        positive_mask=positive,
        assignments=assignments,
        num_clusters=effective,
        anchors=anchors_t,
    )
