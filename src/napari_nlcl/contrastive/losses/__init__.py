"""Contrastive losses: InfoNCE, PatchNCE, supervised-contrastive, asymmetric, ratio-type CR.

Every loss is a pure function working on whatever device and dtype its inputs
live on, plus a thin :class:`torch.nn.Module` wrapper that stores the keyword
arguments and calls the function (kornia style; ``module(x) == function(x)``).
Shapes are checked explicitly and a wrong shape raises :class:`ValueError`
naming the expected layout.  No function keeps state between calls.

* :mod:`.nce`: :func:`info_nce` / :class:`InfoNCELoss`, generic InfoNCE
  (image-level or domain-wise negatives); :func:`patch_nce` /
  :class:`PatchNCELoss`, CUT / FastCUT, NLCL location contrast.
* :mod:`.layer_contrast`: :func:`supervised_contrastive` /
  :class:`SupConLoss`, NLCL layer contrast; :func:`asymmetric_layer_contrast`
  / :class:`AsymmetricLayerContrast`, the asymmetric layer contrast of
  NLCL's journal version (TPAMI 2024).
* :mod:`.regularization`: :func:`contrastive_regularization` /
  :class:`ContrastiveRegularization`, AECR-Net's ratio-type CR (with
  :func:`cr_warmup_weight` and :data:`AECR_WEIGHTS`).
* :mod:`.gan`: :func:`lsgan_loss` / :class:`LSGANLoss`, adversarial terms of
  the recipes.

Import them from here (``from napari_nlcl.contrastive.losses import patch_nce``).

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

from .gan import LSGANLoss, lsgan_loss
from .layer_contrast import (
    AsymmetricLayerContrast,
    SupConLoss,
    asymmetric_layer_contrast,
    supervised_contrastive,
)
from .nce import InfoNCELoss, PatchNCELoss, info_nce, patch_nce
from .regularization import (
    AECR_WEIGHTS,
    ContrastiveRegularization,
    contrastive_regularization,
    cr_warmup_weight,
)

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
