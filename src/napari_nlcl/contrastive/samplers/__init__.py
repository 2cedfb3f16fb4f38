"""Positive / negative samplers for contrastive learning.

Every sampler is a pure function of tensors (kornia style): explicit shape
checks with messages that say what to pass, randomness only through an
explicit ``generator: torch.Generator`` (never the global RNG), no hard-coded
device, and correct for any batch size (each batch element is sampled from
its own image).

Conventions
-----------
* Feature maps and guide images are ``(B, C, H, W)`` tensors.
* Patch coordinates are integer **top-left** ``(y, x)`` = ``(row, column)``
  pairs, shaped ``(B, M, 2)``; a patch of size ``p`` at ``(y, x)`` covers
  ``[y, y + p) x [x, x + p)`` and fits when ``0 <= y <= H - p`` and
  ``0 <= x <= W - p``.
* Random draws happen on the generator's device (a CPU generator may serve
  CUDA features) and the indices are then moved to the features' device.
* Selection (which patch / which negative) is not differentiable and runs
  under ``torch.no_grad``; gathering (:func:`sample_locations`,
  :func:`extract_patches`, :func:`patch_embeddings`,
  :func:`image_level_pairs`) is, so gradients reach the features.

What is here
------------
==================================  =====================================================
:func:`sample_locations`            CUT / PatchNCE random locations shared by query and key
:func:`nonlocal_positives`          NLCL non-local self-similar positives (+ next-nearest)
:func:`reverse_nonlocal`            NLCL reverse non-local: least similar patches
:func:`extract_patches`             gather ``(B, M, C, p, p)`` patches at coordinates
:func:`patch_embeddings`            mean-pooled patch vectors ``(B, M, C)``
:func:`scale_coords`                map coordinates between resolutions
:func:`image_level_pairs`           AECR-Net CR positive / negatives (+ batch negatives)
:func:`domain_negative_mask`        DCoDR: negatives only from the anchor's own domain
:func:`cross_domain_negative_mask`  ablation: negatives only from other domains
:func:`kmeans`                      small seeded spherical k-means (k-means++ init)
:func:`prototype_negative_mask`     HCSC-style prototype-aware negative selection
==================================  =====================================================

By module: :mod:`.patches` (:func:`sample_locations`, :func:`extract_patches`,
:func:`patch_embeddings`, :func:`scale_coords`), :mod:`.nonlocal_sampling`
(:func:`nonlocal_positives`, :func:`reverse_nonlocal`, :class:`NonLocalSample`),
:mod:`.image_pairs` (:func:`image_level_pairs`, :class:`ImagePairs`),
:mod:`.domain_masks` (:func:`domain_negative_mask`,
:func:`cross_domain_negative_mask`) and :mod:`.prototypes` (:func:`kmeans`,
:func:`prototype_negative_mask`, :class:`KMeansResult`,
:class:`PrototypeSelection`).  Import them from here
(``from napari_nlcl.contrastive.samplers import sample_locations``).
"""

from .domain_masks import cross_domain_negative_mask, domain_negative_mask
from .image_pairs import ImagePairs, image_level_pairs
from .nonlocal_sampling import NonLocalSample, nonlocal_positives, reverse_nonlocal
from .patches import extract_patches, patch_embeddings, sample_locations, scale_coords
from .prototypes import KMeansResult, PrototypeSelection, kmeans, prototype_negative_mask

__all__ = [
    "ImagePairs",
    "KMeansResult",
    "NonLocalSample",
    "PrototypeSelection",
    "cross_domain_negative_mask",
    "domain_negative_mask",
    "extract_patches",
    "image_level_pairs",
    "kmeans",
    "nonlocal_positives",
    "patch_embeddings",
    "prototype_negative_mask",
    "reverse_nonlocal",
    "sample_locations",
    "scale_coords",
]
