"""Feature encoders for contrastive losses: taps, projection heads, frozen trunks.

A contrastive loss compares images (or patches) in the feature space of some
*encoder*.  The three methods of this package use three kinds:

* the network being trained taps itself -- CUT's PatchNCE reads the
  generator's own encoder layers, NLCL's layer contrast reads the
  discriminator: :class:`FeatureExtractor` taps named sub-modules of any
  ``nn.Module`` with forward hooks;
* a frozen pretrained classifier -- AECR-Net's contrastive regulariser uses
  VGG19 ``relu1_1 .. relu5_1``: :class:`VGG19Features`, written here with
  torchvision's parameter names so torchvision's ImageNet file loads as is;
* a small frozen network that ships with the package, so every loss also works
  offline: :class:`TinyEncoder` (and its uncalibrated sibling
  :class:`RandomEncoder`).

Patch features are mapped to the contrastive space by 2-layer MLP heads,
:class:`ProjectionHeads`, which are built *eagerly* -- before the optimiser
is created -- from the channel counts that :func:`infer_channels` measures
with one dummy forward.  (The released CUT code builds its heads lazily inside
the first ``forward``, after the optimiser was set up, so unless the training
script re-creates the optimiser the heads are never stepped.)

Every encoder is a callable ``x -> list[Tensor]``: one feature map per
requested layer, in the order the layers were requested.  The frozen trunks
expect ``(B, 3, H, W)`` (or ``(B, 1, H, W)``, repeated to RGB) images in
``[0, 1]`` and share the layer names ``convB_K``, ``reluB_K`` and ``poolB``
(block ``B``, convolution ``K``), so a configuration can swap one trunk for
another without renaming its layers; their parameters are frozen but
gradients flow through them to the input, as a perceptual or contrastive
loss needs.

Modules: :mod:`.taps` (:class:`FeatureExtractor`), :mod:`.heads`
(:class:`ProjectionHead`, :class:`ProjectionHeads`, :func:`infer_channels`),
:mod:`.trunks` (:class:`FrozenTrunk`, :class:`VGG19Features`,
:class:`TinyEncoder`, :class:`RandomEncoder`, and how the offline encoder's
weights were made), :mod:`.layout` (the VGG-style configurations),
:mod:`.weight_files` (reading, downloading and locating weight files) and
:mod:`.factory` (:func:`load_encoder`, :func:`default_encoder`).  Import
them from here (``from napari_nlcl.contrastive.encoders import TinyEncoder``).

Examples
--------
>>> import torch
>>> from napari_nlcl.contrastive.encoders import TinyEncoder
>>> enc = TinyEncoder()
>>> feats = enc(torch.rand(1, 3, 64, 64))
>>> [tuple(f.shape[1:]) for f in feats]
[(16, 64, 64), (32, 32, 32), (64, 16, 16), (96, 8, 8), (128, 4, 4)]
"""

from .factory import ENCODER_NAMES, default_encoder, load_encoder
from .heads import ProjectionHead, ProjectionHeads, infer_channels
from .layout import TINY_CFG, VGG19_CFG, trunk_layout, trunk_state_shapes
from .taps import FeatureExtractor
from .trunks import DEFAULT_LAYERS, FrozenTrunk, RandomEncoder, TinyEncoder, VGG19Features
from .weight_files import (
    TINY_WEIGHTS_FILE,
    TINY_WEIGHTS_SHA256,
    VGG19_FILENAME,  # noqa: F401  (public in the old module, not in __all__)
    VGG19_URL,
    read_weights_file,
    vgg19_cache_path,
)

__all__ = [
    "DEFAULT_LAYERS",
    "ENCODER_NAMES",
    "TINY_WEIGHTS_FILE",
    "TINY_WEIGHTS_SHA256",
    "VGG19_URL",
    "TINY_CFG",
    "VGG19_CFG",
    "FeatureExtractor",
    "FrozenTrunk",
    "ProjectionHead",
    "ProjectionHeads",
    "RandomEncoder",
    "TinyEncoder",
    "VGG19Features",
    "default_encoder",
    "infer_channels",
    "load_encoder",
    "read_weights_file",
    "trunk_layout",
    "trunk_state_shapes",
    "vgg19_cache_path",
]
