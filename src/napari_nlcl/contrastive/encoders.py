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

The offline encoder's weights
-----------------------------
``weights/tiny_encoder.pt`` (about 0.76 MB) is made by
``scripts/make_offline_encoder.py`` in a couple of seconds, without network
and without training, and is bit-for-bit reproducible from its seed:

1. ``conv1_1`` (16 filters) = the 8 leading principal components of the
   3x3 RGB patches of twelve images bundled with scikit-image (natural
   photographs, microscopy, textures), each with both signs.  PCA filters of
   natural images are the classic luminance / colour-opponent / oriented
   derivative filters, i.e. edge and colour detectors; the sign pairs keep
   both polarities through the ReLU.
2. ``conv2_1 .. conv5_1`` = seeded orthogonal random weights.  Random
   convolutional features are a known, working feature space for
   perceptual and texture losses (Ulyanov et al. 2018, "Deep Image Prior";
   He, Wang & Hopcroft 2016, "A powerful generative model using random
   weights for the deep image representation"); orthogonal rows keep
   distinct filters decorrelated.
3. Every convolution is then calibrated on those images, layer after layer
   (data-dependent initialisation, as in Mishkin & Matas 2016, "All you need
   is a good init", or Kraehenbuehl et al. 2016): per output channel, the
   weights are divided by the standard deviation of the pre-activation and
   the bias removes its mean.  Each channel thus fires on about half of the
   natural-image positions and every layer has unit-scale responses, so the
   layer weights of a multi-layer loss (AECR-Net's 1/32 ... 1) mean the same
   thing at every depth and no channel is dead.

Training the trunk (as an autoencoder or with a self-supervised objective) was
considered and not done: a few CPU minutes would not beat the calibrated
random features by a margin worth the lost reproducibility (training results
depend on thread count and BLAS), and the file would have to be regenerated
whenever the recipe changed.  When the ImageNet VGG19 file is available,
:func:`default_encoder` prefers it.

Examples
--------
>>> import torch
>>> from napari_nlcl.contrastive.encoders import TinyEncoder
>>> enc = TinyEncoder()
>>> feats = enc(torch.rand(1, 3, 64, 64))
>>> [tuple(f.shape[1:]) for f in feats]
[(16, 64, 64), (32, 32, 32), (64, 16, 16), (96, 8, 8), (128, 4, 4)]
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import urllib.error
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

#: The layers AECR-Net's contrastive regulariser reads (the first ReLU of each block).
DEFAULT_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

#: torchvision's ImageNet VGG19 weights; ``dcbb9e9d`` is the prefix of the file's SHA-256.
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = VGG19_URL.rsplit("/", 1)[-1]

#: The offline encoder's weights, package data of ``napari_nlcl.weights``.
TINY_WEIGHTS_FILE = "tiny_encoder.pt"
#: SHA-256 of that file as written by ``scripts/make_offline_encoder.py`` (seed 0).
TINY_WEIGHTS_SHA256 = "c4f33e21f124f9955286d81d33109d8cf6ead154fd886fc544edddec45d45e89"

#: Names accepted by :func:`load_encoder`.
ENCODER_NAMES: tuple[str, ...] = ("tiny", "vgg19", "random", "default")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _format_names(names: Sequence[str], limit: int = 60) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def _check_layer_names(layers: Any) -> list[str]:
    if isinstance(layers, str):
        raise TypeError(
            f"layers must be a sequence of layer names, got the string {layers!r}; "
            f"write [{layers!r}]"
        )
    try:
        layers = list(layers)
    except TypeError:
        raise TypeError(
            f"layers must be a sequence of layer names, got {type(layers).__name__}"
        ) from None
    if not layers:
        raise ValueError("layers is empty: name at least one layer to extract")
    bad = [n for n in layers if not isinstance(n, str)]
    if bad:
        raise TypeError(f"layer names must be strings, got {bad!r}")
    return layers


# ---------------------------------------------------------------------------------------------
# Tapping any module
# ---------------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once every tapped layer has run."""


class _TapState:
    """What the hooks share with their extractor (the hooks must not reference the extractor)."""

    __slots__ = ("store", "detach", "stop_at_last", "n_hooked")

    def __init__(self, detach: bool, stop_at_last: bool, n_hooked: int):
        self.store: dict[str, Tensor] | None = None  # None: not running, hooks do nothing
        self.detach = detach
        self.stop_at_last = stop_at_last
        self.n_hooked = n_hooked


def _make_hook(state: _TapState, name: str) -> Callable:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        store = state.store
        if store is None or name in store:  # not extracting, or a re-used module's later call
            return
        if not isinstance(output, Tensor):
            raise TypeError(
                f"layer {name!r} ({type(module).__name__}) returns {type(output).__name__}, "
                "not a Tensor; tap one of its sub-modules instead"
            )
        store[name] = output.detach() if state.detach else output
        if state.stop_at_last and len(store) == state.n_hooked:
            raise _StopForward

    return hook


def _remove_handles(handles: list) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()


class FeatureExtractor:
    """Tap the outputs of named sub-modules of any ``nn.Module``.

    Forward hooks are registered once, here, and stay until :meth:`remove`
    (or the end of a ``with`` block, or the extractor being garbage
    collected).  They record activations only while the extractor itself runs
    the module, so calling the module directly (e.g. the generator producing
    its output) costs nothing and stores nothing; the recorded activations are
    dropped as soon as :meth:`forward` returns them.

    The extractor does not own the module: it is not an ``nn.Module``, has no
    parameters, and moving, training or checkpointing the module is the
    owner's business (no duplicated weights in a checkpoint).

    Parameters
    ----------
    module : nn.Module
        The network to tap (a generator as in CUT, a discriminator as in NLCL,
        a frozen trunk, ...).
    layers : sequence of str
        Names as listed by ``module.named_modules()``, plus ``"input"`` for the
        raw input of :meth:`forward` (it takes precedence over a sub-module of
        that name).  Repeats are allowed.
    detach : bool
        Return detached features and run the module under ``torch.no_grad()``
        (no graph is built, nothing is back-propagated into the module).
    stop_at_last : bool
        End the forward pass as soon as every tapped layer has run (by raising
        a private exception from the last hook and catching it), so nothing
        after the deepest tapped layer is computed.  Only for modules whose
        ``forward`` does not catch exceptions or keep state half-updated.

    Notes
    -----
    If a tapped module runs more than once in one forward pass (a shared
    block), the output of its first call is returned.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> with FeatureExtractor(net, ["input", "1", "2"]) as tap:
    ...     feats = tap(torch.rand(2, 3, 16, 16))
    >>> [tuple(f.shape) for f in feats]
    [(2, 3, 16, 16), (2, 8, 14, 14), (2, 4, 12, 12)]
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Sequence[str],
        *,
        detach: bool = False,
        stop_at_last: bool = False,
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        layers = _check_layer_names(layers)
        named = {name: m for name, m in module.named_modules() if name}
        unknown = [n for n in layers if n != "input" and n not in named]
        if unknown:
            raise ValueError(
                f"unknown layer name(s) {unknown} for {type(module).__name__}; available: "
                f"'input', {_format_names(list(named))}"
            )
        hooked = list(dict.fromkeys(n for n in layers if n != "input"))
        self._module = module
        self._layers = tuple(layers)
        self._hooked = tuple(hooked)
        self._state = _TapState(bool(detach), bool(stop_at_last), len(hooked))
        self._handles = [named[n].register_forward_hook(_make_hook(self._state, n)) for n in hooked]
        # the hooks only reference the state, so an unused extractor can be collected; then its
        # hooks go with it
        self._finalizer = weakref.finalize(self, _remove_handles, self._handles)

    # -- properties -----------------------------------------------------------------------
    @property
    def module(self) -> nn.Module:
        """The tapped module."""
        return self._module

    @property
    def layers(self) -> tuple[str, ...]:
        """The tapped layer names, in output order."""
        return self._layers

    @property
    def detach(self) -> bool:
        return self._state.detach

    @property
    def stop_at_last(self) -> bool:
        return self._state.stop_at_last

    @property
    def removed(self) -> bool:
        """True once the hooks are removed (the extractor can no longer be used)."""
        return not self._finalizer.alive

    # -- running --------------------------------------------------------------------------
    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
        """Run ``module(x, *args, **kwargs)`` and return the tapped features in layer order.

        The module's own output is discarded.  When only ``"input"`` is tapped
        the module is not run.
        """
        if self.removed:
            raise RuntimeError("this FeatureExtractor's hooks were removed; create a new one")
        state = self._state
        store: dict[str, Tensor] = {}
        state.store = store
        try:
            grad_ctx = torch.no_grad() if state.detach else contextlib.nullcontext()
            with grad_ctx:
                if self._hooked:
                    try:
                        self._module(x, *args, **kwargs)
                    except _StopForward:
                        pass
        finally:
            state.store = None
        missing = [n for n in self._hooked if n not in store]
        if missing:
            raise RuntimeError(
                f"layer(s) {missing} of {type(self._module).__name__} did not run during its "
                "forward pass, so they cannot be tapped"
            )
        inp = x.detach() if state.detach and isinstance(x, Tensor) else x
        return [inp if n == "input" else store[n] for n in self._layers]

    def __call__(self, x: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
        return self.forward(x, *args, **kwargs)

    # -- hooks lifetime -------------------------------------------------------------------
    def remove(self) -> None:
        """Remove the hooks from the module (idempotent)."""
        self._finalizer()

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        flags = f"detach={self.detach}, stop_at_last={self.stop_at_last}"
        state = ", removed" if self.removed else ""
        return (
            f"FeatureExtractor({type(self._module).__name__}, layers={list(self._layers)}, "
            f"{flags}{state})"
        )


# ---------------------------------------------------------------------------------------------
# Projection heads
# ---------------------------------------------------------------------------------------------


def _reset_linear_(linear: nn.Linear, generator: torch.Generator | None) -> None:
    """PyTorch's default ``nn.Linear`` initialisation, drawn from ``generator``."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(linear.in_features)
        nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


class ProjectionHead(nn.Module):
    """Two-layer MLP (Linear-ReLU-Linear) followed by L2 normalisation.

    Maps feature vectors (the last axis, e.g. ``(B, N, C)`` sampled patches or
    ``(B, C)`` pooled features) to unit vectors of ``out_dim`` dimensions,
    as CUT's and NLCL's MLP heads do.

    Parameters
    ----------
    in_channels : int
        Size of the input's last axis.
    out_dim, hidden : int
        Output and hidden sizes (CUT: 256 and 256).
    generator : torch.Generator, optional
        Draw the initial weights from this generator (PyTorch's default
        ``nn.Linear`` scheme) instead of the global RNG.
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int = 256,
        hidden: int = 256,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        sizes = {"in_channels": in_channels, "out_dim": out_dim, "hidden": hidden}
        for label, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
        )
        if generator is not None:
            _reset_linear_(self.mlp[0], generator)
            _reset_linear_(self.mlp[2], generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_channels:
            hint = ""
            if x.ndim == 4 and x.shape[1] == self.in_channels:
                hint = (
                    "; this looks like a (B, C, H, W) feature map: sample patches to (B, N, C) "
                    "or use x.flatten(2).transpose(1, 2)"
                )
            raise ValueError(
                f"expected features with {self.in_channels} channels on the last axis, "
                f"got shape {tuple(x.shape)}{hint}"
            )
        return F.normalize(self.mlp(x), dim=-1, eps=1e-7)


class ProjectionHeads(nn.ModuleList):
    """One :class:`ProjectionHead` per tapped layer, all created in ``__init__``.

    Build it before the optimiser (see :func:`infer_channels`) and give its
    ``parameters()`` to the optimiser, so the heads are trained.

    Parameters
    ----------
    in_channels : sequence of int
        Channels of each tapped layer, in order.
    out_dim, hidden : int
        Sizes of every head.
    generator : torch.Generator, optional
        Seeded initialisation (heads drawn one after the other).

    Examples
    --------
    >>> import torch
    >>> heads = ProjectionHeads([8, 16], out_dim=32)
    >>> z = heads([torch.rand(2, 10, 8), torch.rand(2, 10, 16)])
    >>> [tuple(t.shape) for t in z]
    [(2, 10, 32), (2, 10, 32)]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_dim: int = 256,
        hidden: int = 256,
        *,
        generator: torch.Generator | None = None,
    ):
        if isinstance(in_channels, int):
            raise TypeError(
                f"in_channels must be a sequence of ints (one per layer), got {in_channels}"
            )
        in_channels = list(in_channels)
        if not in_channels:
            raise ValueError("in_channels is empty: give the channel count of each tapped layer")
        super().__init__(
            ProjectionHead(c, out_dim, hidden, generator=generator) for c in in_channels
        )
        self.in_channels = tuple(in_channels)
        self.out_dim = out_dim

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Project ``features[i]`` with head ``i``; returns unit vectors on the last axis."""
        if isinstance(features, Tensor):
            raise TypeError(
                "features must be a list of tensors (one per head), got a single Tensor"
            )
        features = list(features)
        if len(features) != len(self):
            raise ValueError(f"got {len(features)} feature tensors for {len(self)} heads")
        return [head(f) for head, f in zip(self, features)]


def infer_channels(
    extractor: Callable[[Tensor], Sequence[Tensor]],
    example_input: Tensor | Sequence[int],
) -> list[int]:
    """Channels (axis 1) of each feature an extractor returns, from one dummy forward.

    Use it to build :class:`ProjectionHeads` eagerly, before training.  The
    forward runs under ``torch.no_grad()`` with the module temporarily in eval
    mode (so batch-norm statistics are not touched); training flags are
    restored afterwards.

    Parameters
    ----------
    extractor : callable
        A :class:`FeatureExtractor`, an encoder of this module, or any callable
        ``x -> list[Tensor]`` with channel-first outputs (``(B, C, ...)``).
    example_input : Tensor or tuple of int
        An input, or its shape (zeros on the module's device and dtype are used).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> infer_channels(FeatureExtractor(net, ["0", "2"]), (1, 3, 16, 16))
    [8, 4]
    """
    if isinstance(extractor, FeatureExtractor):
        module: nn.Module | None = extractor.module
    elif isinstance(extractor, nn.Module):
        module = extractor
    else:
        module = None
    if not isinstance(example_input, Tensor):
        shape = tuple(int(s) for s in example_input)
        ref = None
        if module is not None:
            ref = next(module.parameters(), None)
            if ref is None:
                ref = next(module.buffers(), None)
        kw: dict[str, Any] = {}
        if ref is not None:
            kw = {"device": ref.device, "dtype": ref.dtype if ref.is_floating_point() else None}
        example_input = torch.zeros(shape, **kw)
    modes = [(m, m.training) for m in module.modules()] if module is not None else []
    try:
        if module is not None:
            module.eval()
        with torch.no_grad():
            feats = extractor(example_input)
    finally:
        for m, mode in modes:
            m.training = mode
    channels = []
    for i, f in enumerate(feats):
        if not isinstance(f, Tensor) or f.ndim < 2:
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise ValueError(f"feature {i} is not a (B, C, ...) tensor: {shape}")
        channels.append(int(f.shape[1]))
    return channels


# ---------------------------------------------------------------------------------------------
# Frozen convolutional trunks (VGG19 and the tiny offline encoder)
# ---------------------------------------------------------------------------------------------

VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
TINY_CFG: tuple[int | str, ...] = (16, "M", 32, "M", 64, "M", 96, "M", 128)


def trunk_layout(cfg: Sequence[int | str], in_channels: int = 3) -> list[dict[str, Any]]:
    """Describe the ``features`` sequence a VGG-style config builds.

    One dict per module, at its torchvision ``features`` index, with keys
    ``name`` (``convB_K``, ``reluB_K`` or ``poolB``), ``kind`` (``conv``,
    ``relu``, ``pool``), ``channels`` (output channels), ``stride`` (w.r.t.
    the input) and, for convolutions, ``in_channels``.
    """
    layout: list[dict[str, Any]] = []
    block, k, c, stride = 1, 0, in_channels, 1
    for v in cfg:
        if v == "M":
            stride *= 2
            layout.append({"name": f"pool{block}", "kind": "pool", "channels": c, "stride": stride})
            block, k = block + 1, 0
        else:
            k += 1
            layout.append(
                {"name": f"conv{block}_{k}", "kind": "conv", "channels": int(v),
                 "in_channels": c, "stride": stride}
            )  # fmt: skip
            layout.append(
                {"name": f"relu{block}_{k}", "kind": "relu", "channels": int(v), "stride": stride}
            )
            c = int(v)
    return layout


def trunk_state_shapes(
    cfg: Sequence[int | str], in_channels: int = 3
) -> dict[str, tuple[int, ...]]:
    """``{"features.N.weight": shape, "features.N.bias": shape}`` of the full trunk."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, entry in enumerate(trunk_layout(cfg, in_channels)):
        if entry["kind"] == "conv":
            shapes[f"features.{i}.weight"] = (entry["channels"], entry["in_channels"], 3, 3)
            shapes[f"features.{i}.bias"] = (entry["channels"],)
    return shapes


def _unsafe_global(exc: BaseException) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return match.group(1) if match else None


def read_weights_file(path: str | os.PathLike) -> Any:
    """Read a state dict from a ``.pt``/``.pth`` (or ``.safetensors``) file, never unpickling code.

    Returns the object the file holds (normally a ``dict[str, Tensor]``; the
    encoders check keys and shapes).

    ``.pt``/``.pth`` files go through ``torch.load(..., weights_only=True)``;
    files holding pickled Python objects other than tensors and plain
    containers are refused with a ``ValueError``, as are corrupt files.
    ``.safetensors`` files need the optional ``safetensors`` package.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {str(path)!r}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(
                f"{path.name} is a .safetensors file: install the 'safetensors' package to read "
                "it, or pass the .pth file instead"
            ) from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise ValueError(f"could not read the safetensors file {str(path)!r}: {exc}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = _unsafe_global(exc)
        if name is not None:
            raise ValueError(
                f"refused to load {str(path)!r}: it stores a pickled Python object ({name}), "
                "not only tensors. Only plain state dicts are loaded (torch.load with "
                "weights_only=True), because unpickling can run arbitrary code. If you trust "
                "the file, load it yourself and re-save `model.state_dict()` with torch.save."
            ) from exc
        raise ValueError(
            f"could not read {str(path)!r}: not a PyTorch weights file, or the file is corrupt "
            f"or truncated (an interrupted download?): {str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"could not read {str(path)!r}: the file is corrupt or truncated (an interrupted "
            f"download?) or not a PyTorch weights file: {first}"
        ) from exc
    return obj


def vgg19_cache_path() -> Path:
    """Where ``torch.hub`` keeps (or would keep) the downloaded ImageNet VGG19 file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def _download_vgg19() -> Any:
    try:
        return torch.hub.load_state_dict_from_url(
            VGG19_URL, progress=True, check_hash=True, map_location="cpu", weights_only=True
        )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise OSError(
            f"could not download the ImageNet VGG19 weights from {VGG19_URL} ({exc}); is this "
            "machine offline? On a machine with internet, download that file "
            f"({VGG19_FILENAME}, about 550 MB), copy it here and pass "
            f"weights='/path/to/{VGG19_FILENAME}' (or put it in {vgg19_cache_path().parent}, "
            "where torch.hub finds it), or use the offline encoder: load_encoder('tiny') or "
            "default_encoder()."
        ) from exc
    except (pickle.UnpicklingError, RuntimeError) as exc:
        cached = vgg19_cache_path()
        if not cached.is_file():  # e.g. a failed hash check of a fresh download
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"the cached VGG19 file {str(cached)!r} could not be read ({first}); "
            "delete it to download it again"
        ) from exc


class FrozenTrunk(nn.Module):
    """A frozen VGG-style ``features`` trunk built up to the deepest requested layer.

    Base class of :class:`VGG19Features` and :class:`TinyEncoder`; subclasses
    set ``cfg`` (torchvision's VGG config notation) and ``name``.  Attributes:
    ``layers``, ``channels`` and ``strides`` (one per requested layer),
    ``weights_source`` (where the weights came from), ``normalize_input``.
    """

    cfg: ClassVar[tuple[int | str, ...]]
    name: str = "trunk"
    #: keys of a weights file that are ignored (e.g. torchvision's classifier)
    ignored_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, layers: Sequence[str], *, normalize_input: bool):
        super().__init__()
        layers = _check_layer_names(layers)
        layout = trunk_layout(self.cfg)
        index = {e["name"]: i for i, e in enumerate(layout)}
        unknown = [n for n in layers if n not in index]
        if unknown:
            raise ValueError(
                f"unknown layer name(s) {unknown} for {type(self).__name__}; available: "
                f"{_format_names([e['name'] for e in layout], limit=100)}"
            )
        self._indices = tuple(index[n] for n in layers)
        depth = max(self._indices) + 1
        modules: list[nn.Module] = []
        for e in layout[:depth]:
            if e["kind"] == "conv":
                modules.append(nn.Conv2d(e["in_channels"], e["channels"], 3, padding=1))
            elif e["kind"] == "relu":
                modules.append(nn.ReLU(inplace=False))  # conv outputs may be tapped
            else:
                modules.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*modules)
        self.layers = tuple(layers)
        self.channels = tuple(layout[i]["channels"] for i in self._indices)
        self.strides = tuple(layout[i]["stride"] for i in self._indices)
        self.normalize_input = bool(normalize_input)
        self.weights_source = "random"
        # not persistent: the state dict holds exactly torchvision's `features.N` keys
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTrunk:
        """Frozen: always stays in eval mode."""
        return super().train(False)

    # -- weights ---------------------------------------------------------------------------
    def _load_weights(self, state_dict: Any, source: str) -> None:
        if not isinstance(state_dict, Mapping):
            raise ValueError(
                f"{source}: expected a state dict (a mapping), got {type(state_dict).__name__}"
            )
        if set(state_dict) == {"state_dict"} and isinstance(state_dict["state_dict"], Mapping):
            state_dict = state_dict["state_dict"]
        keys = list(state_dict)
        if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
            state_dict = {k[len("module."):]: v for k, v in state_dict.items()}  # DataParallel
        full = trunk_state_shapes(self.cfg)
        own = self.state_dict()
        problems = []
        missing = [k for k in own if k not in state_dict]
        if missing:
            problems.append(f"missing keys {missing}")
        unexpected = [
            k for k in state_dict
            if k not in full and not (isinstance(k, str) and k.startswith(self.ignored_prefixes))
        ]  # fmt: skip
        if unexpected:
            problems.append(f"unexpected keys {_format_names(unexpected, limit=10)}")
        not_tensors = [k for k in full if k in state_dict and not isinstance(state_dict[k], Tensor)]
        if not_tensors:
            problems.append(f"values that are not tensors at {not_tensors}")
        shapes = [
            f"{k}: {tuple(state_dict[k].shape)} instead of {full[k]}"
            for k in full
            if k in state_dict and isinstance(state_dict[k], Tensor)
            and tuple(state_dict[k].shape) != full[k]
        ]  # fmt: skip
        if shapes:
            problems.append("wrong shapes " + "; ".join(shapes))
        if problems:
            raise ValueError(
                f"{source} does not hold {type(self).__name__} weights "
                f"(torchvision-style 'features.N.weight/bias' keys): " + "; ".join(problems)
            )
        self.load_state_dict({k: state_dict[k] for k in own}, strict=True)

    def _load_from(self, weights: Any) -> None:
        if isinstance(weights, Mapping):
            self._load_weights(weights, "the given state dict")
            self.weights_source = "state dict"
        elif isinstance(weights, (str, os.PathLike)):
            self._load_weights(read_weights_file(weights), f"weights file {str(weights)!r}")
            self.weights_source = os.fspath(weights)
        else:
            raise TypeError(
                "weights must be None, a name, a file path or a state dict, "
                f"got {type(weights).__name__}"
            )

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of ``x`` (``(B, 3 or 1, H, W)`` in ``[0, 1]``) at each requested layer."""
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"{type(self).__name__} expects images of shape (B, 3, H, W) or (B, 1, H, W) in "
                f"[0, 1], got shape {tuple(x.shape)}"
            )
        need = max(self.strides)
        if x.shape[-2] < need or x.shape[-1] < need:
            raise ValueError(
                f"input of {x.shape[-2]}x{x.shape[-1]} pixels is too small for layer "
                f"{self.layers[self.strides.index(need)]!r} (stride {need}): need at least "
                f"{need}x{need}"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.normalize_input:
            x = (x - self.mean) / self.std
        wanted = set(self._indices)
        out: dict[int, Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[i] = x
        return [out[i] for i in self._indices]

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, weights={self.weights_source!r}"


class VGG19Features(FrozenTrunk):
    """Frozen VGG19 convolutional trunk returning the requested ReLU/conv/pool features.

    The ``features`` sequence and its indices are torchvision's
    (``features.0`` = ``conv1_1``, ``features.28`` = ``conv5_1``,
    ``features.34`` = ``conv5_4``), so torchvision's ImageNet state dict loads
    directly (its ``classifier`` keys are ignored).  Only the modules up to the
    deepest requested layer are built and run.

    Parameters
    ----------
    layers : sequence of str
        Layer names ``convB_K``, ``reluB_K`` (blocks 1-5; 2 convolutions in
        blocks 1-2, 4 in blocks 3-5) or ``poolB``; output order follows.
    weights : None, "imagenet", path or state dict
        ``None``: random (seeded, torchvision's Kaiming init) -- use
        :func:`load_encoder` for the pretrained default.  ``"imagenet"``:
        torchvision's file, downloaded once into the torch hub cache (its hash
        is checked) or read from that cache; offline, an ``OSError`` says what
        to do.  A path: a local copy (``.pth`` loaded with
        ``weights_only=True``; ``.safetensors`` if that package is installed).
    normalize_input : bool
        Apply ImageNet mean/std normalisation to the ``[0, 1]`` input.
    seed : int
        Seed of the random initialisation when ``weights`` is None.
    """

    cfg = VGG19_CFG
    name = "vgg19"
    ignored_prefixes = ("classifier.",)

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_LAYERS,
        *,
        weights: None | str | os.PathLike | Mapping[str, Tensor] = None,
        normalize_input: bool = True,
        seed: int = 0,
    ):
        super().__init__(layers, normalize_input=normalize_input)
        if weights is None:
            g = torch.Generator().manual_seed(int(seed))
            with torch.no_grad():
                for m in self.features:
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(
                            m.weight, mode="fan_out", nonlinearity="relu", generator=g
                        )
                        nn.init.zeros_(m.bias)
            self.weights_source = f"random (seed {seed})"
        elif isinstance(weights, str) and weights == "imagenet":
            self._load_weights(_download_vgg19(), f"the ImageNet VGG19 file {VGG19_FILENAME}")
            self.weights_source = "imagenet"
        else:
            self._load_from(weights)
        self._freeze()


def _orthogonal_init_(trunk: FrozenTrunk, seed: int, gain: float = math.sqrt(2.0)) -> None:
    """Seeded orthogonal conv weights (drawn and orthogonalised in float64), zero biases.

    Every convolution of the *full* trunk is drawn in order, so the weights of
    a layer do not depend on how deep the trunk was built.
    """
    g = torch.Generator().manual_seed(int(seed))
    convs = [m for m in trunk.features if isinstance(m, nn.Conv2d)]
    shapes = [s for k, s in trunk_state_shapes(trunk.cfg).items() if k.endswith("weight")]
    with torch.no_grad():
        for i, shape in enumerate(shapes):
            rows, cols = shape[0], math.prod(shape[1:])
            a = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=torch.float64)
            q, r = torch.linalg.qr(a)
            q = q * torch.sign(torch.diagonal(r))  # unique (Haar-distributed) factor
            w = q if rows >= cols else q.T
            if i < len(convs):
                convs[i].weight.copy_((gain * w).reshape(shape).to(convs[i].weight.dtype))
                convs[i].bias.zero_()


def _shipped_tiny_weights() -> dict[str, Tensor]:
    ref = resources.files("napari_nlcl.weights").joinpath(TINY_WEIGHTS_FILE)
    if not ref.is_file():
        raise FileNotFoundError(
            f"the offline encoder weights napari_nlcl/weights/{TINY_WEIGHTS_FILE} are missing "
            "from this installation; reinstall napari-nlcl, or recreate them with "
            "scripts/make_offline_encoder.py"
        )
    with resources.as_file(ref) as path:
        return read_weights_file(path)


class TinyEncoder(FrozenTrunk):
    """Small frozen CNN with VGG-like taps, shipped with the package (works offline).

    Five blocks of one 3x3 convolution + ReLU, 2x2 max pooling between
    blocks, 16-32-64-96-128 channels: ``relu1_1 .. relu5_1`` at strides
    1, 2, 4, 8, 16 (receptive field of ``relu5_1``: 78 px), about 190 k
    parameters.  How the shipped weights were made is described in this
    module's docstring.

    Parameters
    ----------
    layers : sequence of str
        ``conv1_1 .. conv5_1``, ``relu1_1 .. relu5_1`` or ``pool1 .. pool4``.
    weights : "default", None, path or state dict
        ``"default"``: the shipped file.  ``None``: seeded orthogonal random
        weights (uncalibrated; see :class:`RandomEncoder`).
    normalize_input : bool
        ImageNet mean/std normalisation of the ``[0, 1]`` input; the shipped
        weights were calibrated with it on.
    seed : int
        Seed of the random weights when ``weights`` is None.
    """

    cfg = TINY_CFG
    name = "tiny"

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_LAYERS,
        *,
        weights: None | str | os.PathLike | Mapping[str, Tensor] = "default",
        normalize_input: bool = True,
        seed: int = 0,
    ):
        super().__init__(layers, normalize_input=normalize_input)
        if weights is None:
            _orthogonal_init_(self, seed)
            self.weights_source = f"random orthogonal (seed {seed})"
        elif isinstance(weights, str) and weights == "default":
            self._load_weights(_shipped_tiny_weights(), f"the shipped {TINY_WEIGHTS_FILE}")
            self.weights_source = "shipped"
        else:
            self._load_from(weights)
        self._freeze()


class RandomEncoder(TinyEncoder):
    """:class:`TinyEncoder` with seeded orthogonal random weights (a frozen random network).

    Weights are drawn in float64 from ``torch.Generator().manual_seed(seed)``
    and orthogonalised (He gain), biases are zero: the same seed gives the
    same network on every machine and for every choice of ``layers``.
    """

    name = "random"

    def __init__(
        self,
        seed: int = 0,
        layers: Sequence[str] = DEFAULT_LAYERS,
        *,
        normalize_input: bool = True,
    ):
        super().__init__(layers, weights=None, normalize_input=normalize_input, seed=seed)


# ---------------------------------------------------------------------------------------------
# Choosing an encoder
# ---------------------------------------------------------------------------------------------


def load_encoder(
    name: str = "tiny",
    *,
    layers: Sequence[str] = DEFAULT_LAYERS,
    weights: None | str | os.PathLike | Mapping[str, Tensor] = None,
    normalize_input: bool = True,
    seed: int = 0,
) -> FrozenTrunk:
    """Build a frozen encoder by name.

    Parameters
    ----------
    name : {"tiny", "vgg19", "random", "default"}
        ``"tiny"``: :class:`TinyEncoder` with the shipped weights (or
        ``weights``).  ``"vgg19"``: :class:`VGG19Features` with ImageNet weights
        (downloaded once; or a local file given as ``weights``).
        ``"random"``: :class:`RandomEncoder` with ``seed``.  ``"default"``:
        :func:`default_encoder`.
    layers : sequence of str
        Layers to return (same names for every trunk).
    weights : path or state dict, optional
        Overrides the default weights of ``"tiny"`` and ``"vgg19"``.

    Returns
    -------
    nn.Module
        Frozen, in eval mode, with ``.name``, ``.layers``, ``.channels``,
        ``.strides`` and ``.weights_source``.
    """
    if not isinstance(name, str) or name.lower() not in ENCODER_NAMES:
        raise ValueError(f"unknown encoder {name!r}; choose one of {list(ENCODER_NAMES)}")
    name = name.lower()
    if weights is not None and name in ("random", "default"):
        raise ValueError(f"encoder {name!r} takes no weights; use 'tiny' or 'vgg19' with a file")
    if name == "tiny":
        return TinyEncoder(layers, weights="default" if weights is None else weights,
                           normalize_input=normalize_input)  # fmt: skip
    if name == "vgg19":
        return VGG19Features(layers, weights="imagenet" if weights is None else weights,
                             normalize_input=normalize_input)  # fmt: skip
    if name == "random":
        return RandomEncoder(seed, layers, normalize_input=normalize_input)
    return default_encoder(layers, normalize_input=normalize_input)


def default_encoder(
    layers: Sequence[str] = DEFAULT_LAYERS, *, normalize_input: bool = True
) -> FrozenTrunk:
    """ImageNet VGG19 if its file is already in the torch hub cache, else :class:`TinyEncoder`.

    Nothing is downloaded.  Which one was chosen is in the result's ``.name``
    (``"vgg19"`` or ``"tiny"``); a cached file that cannot be read gives a
    warning and the tiny encoder.
    """
    cached = vgg19_cache_path()
    if cached.is_file():
        try:
            return VGG19Features(layers, weights=cached, normalize_input=normalize_input)
        except ValueError as exc:
            warnings.warn(
                f"ignoring the cached VGG19 weights ({exc}); using the offline tiny encoder",
                RuntimeWarning,
                stacklevel=2,
            )
    return TinyEncoder(layers, normalize_input=normalize_input)
