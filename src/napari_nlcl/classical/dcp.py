"""Dark Channel Prior dehazing (He, Sun & Tang, CVPR 2009 / TPAMI 2011).

The haze model is ``I = J t + A (1 - t)``: the observed image ``I`` is the
scene radiance ``J`` attenuated by the transmission ``t`` plus the
atmospheric light ``A`` scattered into the line of sight.  The *dark channel
prior* says that in haze-free outdoor patches at least one colour channel is
close to zero, so the dark channel of ``I / A`` estimates ``1 - t``.

Every step is a pure, vectorised torch function (kornia style) that works on
whatever device and dtype its input lives on; half precision inputs are
computed in float32 and cast back.  The local filters (min, box and guided
filter) are in :mod:`napari_nlcl.classical.filters`.  :class:`DarkChannelPrior`
wraps the steps in an ``nn.Module`` that satisfies the
:class:`napari_nlcl.model.Model` contract.

Pipeline and locality
---------------------
1. ``airlight``: global, estimated once per image plane
   (:func:`estimate_airlight`; :meth:`DarkChannelPrior.estimate_globals`).
2. ``t~ = 1 - omega * dark_channel(I / A)``: min over channels, then a
   ``patch x patch`` min filter -> depends on ``patch // 2`` pixels each side.
3. Refinement: guided filter of ``t~`` with the grey image (channel mean) as
   guide.  The filter applies two box filters of radius ``r`` in sequence
   (window statistics, then the mean of the linear coefficients) -> another
   ``2 r`` pixels each side.
4. ``J = (I - A) / max(t, t0) + A``: pointwise.

Hence an output pixel depends on at most ``patch // 2 + 2 * radius`` pixels
on each side; the dependency window is exactly ``patch + 4 * radius`` pixels
wide (``patch`` without refinement; for even ``patch`` it reaches one pixel
further up/left than down/right), which is the ``receptive_field`` the module
reports, and ``receptive_field // 2`` is the context a tile needs.  Borders are replicate-padded at
every stage, so a tile cut out of a larger image with at least that much
context reproduces the untiled result exactly (given the same airlight).

Defaults
--------
``patch=15, omega=0.95`` are He et al.'s.  For refinement He used a guided
filter with ``r=60, eps=1e-4`` on ~600x400 images.  The defaults here were
chosen by inspecting the real hazy photographs of
``docs/images/dcp_real_haze.png`` (256 px high; ``docs/make_dcp_figure.py``):

* ``radius=30, eps=1e-4``: ``r = 10`` leaves dark blotches in flat sky next
  to buildings; ``r >= 40`` or ``eps = 1e-3 .. 1e-2`` lets the transmission
  bleed across depth edges (light halos around roofs and tree trunks);
  ``r = 20 .. 30`` with He's ``eps = 1e-4`` follows the edges tightly and
  keeps the receptive field (``15 + 4 * 30 = 135`` px), hence the tile
  overlap, moderate.
* ``t0=0.25`` (He: 0.1): in bright hazy sky the estimated transmission drops
  to ~0.1, and the ``1 / t`` gain turns JPEG noise and lens vignetting into
  grainy, dark, colour-cast skies (``test10.jpg``, ``test.png``); a floor of
  0.25 cuts that gain from 10x to 4x.  Scene content at moderate depth
  (``t > 0.25``) is dehazed exactly as before; only the densest fog keeps a
  little more haze, which also looks more natural there.
  Pass ``t0=0.1`` for He's original setting.

``patch`` and ``radius`` are in pixels: for images much larger than ~600 px
scale them up with the image (He: ``radius`` about 4x ``patch``), at the cost
of a wider receptive field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_nlcl.checks import check_float, check_int, check_tensor_image
from napari_nlcl.classical.base import ClassicalModel
from napari_nlcl.classical.filters import guided_filter, min_filter, upcast_half

__all__ = [
    "DarkChannelPrior",
    "dark_channel",
    "dcp_receptive_field",
    "dehaze_dcp",
    "estimate_airlight",
    "transmission",
]

#: Defaults shared by :func:`dehaze_dcp` and :class:`DarkChannelPrior`.
DEFAULT_PATCH = 15
DEFAULT_OMEGA = 0.95
DEFAULT_T0 = 0.25
DEFAULT_RADIUS = 30
DEFAULT_EPS = 1e-4
DEFAULT_TOP = 0.001

#: Smallest atmospheric light allowed per channel (avoids dividing by 0 on
#: black images).
_MIN_AIRLIGHT = 1e-3


# --------------------------------------------------------------------------
# haze model
# --------------------------------------------------------------------------


def dark_channel(x: Tensor, patch: int = DEFAULT_PATCH) -> Tensor:
    """Dark channel ``min_{y in patch(x)} min_c I_c(y)`` -> ``(B, 1, H, W)``.

    The minimum is taken over all ``C`` channels, so grayscale (``C = 1``)
    and multi-channel images work alike.
    """
    check_tensor_image(x)
    patch = check_int(patch, "patch", 1)
    return min_filter(x.amin(dim=1, keepdim=True), patch)


def estimate_airlight(x: Tensor, dark: Tensor | None = None, top: float = DEFAULT_TOP) -> Tensor:
    """Atmospheric light ``A`` per batch element -> ``(B, C)``.

    Picks the brightest ``top`` fraction (at least one pixel) of the dark
    channel, the most haze-opaque region, and returns the **mean** input
    colour over those pixels.  He et al. take the single brightest input
    pixel among them instead; averaging is less sensitive to a white object,
    a specular highlight or noise landing in the candidate set, and for the
    smooth sky/haze region the two coincide.  Each batch element is handled
    independently.

    Parameters
    ----------
    x
        Hazy image ``(B, C, H, W)`` in ``[0, 1]``.
    dark
        Its dark channel ``(B, 1, H, W)``; computed with the default patch
        when ``None``.
    top
        Fraction in ``(0, 1]`` of dark-channel pixels to use (He: 0.1 %).
    """
    check_tensor_image(x)
    top = check_float(top, "top", 0.0, 1.0, lo_open=True)
    if dark is None:
        dark = dark_channel(x)
    check_tensor_image(dark, "dark", channels=1)
    if dark.shape[0] != x.shape[0] or dark.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"dark must have shape (B, 1, H, W) matching x {tuple(x.shape)}, got {tuple(dark.shape)}"
        )
    b, c, h, w = x.shape
    n = max(1, int(top * h * w))
    idx = dark.reshape(b, h * w).topk(n, dim=1).indices  # (B, n)
    pix = x.reshape(b, c, h * w).gather(2, idx[:, None, :].expand(b, c, n))
    return upcast_half(pix).mean(dim=2).to(x.dtype)


def _airlight_map(airlight: Any, x: Tensor) -> Tensor:
    """Broadcast an airlight given as scalar, ``(C,)``, ``(B, C)`` or
    ``(B, C, 1, 1)`` to a ``(B, C, 1, 1)`` tensor on ``x``'s device."""
    b, c = x.shape[:2]
    if isinstance(airlight, Tensor):
        a = airlight.to(device=x.device, dtype=x.dtype)
    elif (isinstance(airlight, (int, float, Sequence)) or hasattr(airlight, "__array__")) and not isinstance(
        airlight, str
    ):
        a = torch.as_tensor(airlight, device=x.device, dtype=x.dtype)
    else:
        raise TypeError(
            f"airlight must be a float, a sequence of C floats or a tensor (B, C), got {type(airlight).__name__}"
        )
    if a.ndim == 4 and a.shape[-2:] == (1, 1):
        a = a[:, :, 0, 0]
    if a.ndim == 0:
        a = a.expand(b, c)
    elif a.ndim == 1:
        if a.shape[0] not in (1, c):
            raise ValueError(f"airlight of shape {tuple(a.shape)} does not match {c} channel(s)")
        a = a[None, :].expand(b, c)
    elif a.ndim == 2:
        if a.shape[0] not in (1, b) or a.shape[1] not in (1, c):
            raise ValueError(
                f"airlight must have shape (B, C) = ({b}, {c}) (or broadcastable), got {tuple(a.shape)}"
            )
        a = a.expand(b, c)
    else:
        raise ValueError(
            f"airlight must be a scalar, (C,), (B, C) or (B, C, 1, 1) tensor, got shape {tuple(a.shape)}"
        )
    if not torch.isfinite(a).all():
        raise ValueError("airlight must be finite")
    return a.clamp(min=_MIN_AIRLIGHT)[:, :, None, None]


def transmission(
    x: Tensor, airlight: Any, patch: int = DEFAULT_PATCH, omega: float = DEFAULT_OMEGA
) -> Tensor:
    """Raw (unrefined) transmission ``1 - omega * dark_channel(I / A)`` -> ``(B, 1, H, W)``.

    ``airlight`` is a scalar, ``(C,)``, ``(B, C)`` or ``(B, C, 1, 1)``.
    ``omega < 1`` keeps a little haze for depth perception (He: 0.95).
    """
    check_tensor_image(x)
    omega = check_float(omega, "omega", 0.0, 1.0)
    w = upcast_half(x)
    a = _airlight_map(airlight, w)
    return (1.0 - omega * dark_channel(w / a, patch)).to(x.dtype)


def _grey(x: Tensor) -> Tensor:
    return x.mean(dim=1, keepdim=True)


def _refined_transmission(
    x: Tensor, a: Tensor, patch: int, omega: float, radius: int, eps: float, refine: bool
) -> Tensor:
    t = transmission(x, a, patch=patch, omega=omega)
    if refine:
        t = guided_filter(_grey(x), t, radius, eps)
    return t


def _check_options(
    patch: int, omega: float, t0: float, radius: int, eps: float
) -> tuple[int, float, float, int, float]:
    """The validated options shared by :func:`dehaze_dcp` and :class:`DarkChannelPrior`."""
    return (
        check_int(patch, "patch", 1),
        check_float(omega, "omega", 0.0, 1.0),
        check_float(t0, "t0", 0.0, 1.0, lo_open=True),
        check_int(radius, "radius", 0),
        check_float(eps, "eps", 0.0, math.inf, lo_open=True),
    )


def _resolve(
    x: Tensor,
    patch: int,
    omega: float,
    t0: float,
    radius: int,
    eps: float,
    airlight: Any,
    top: float,
) -> tuple[Tensor, Tensor, int, float, float, int, float]:
    check_tensor_image(x)
    patch, omega, t0, radius, eps = _check_options(patch, omega, t0, radius, eps)
    w = upcast_half(x)
    if airlight is None:
        airlight = estimate_airlight(w, dark_channel(w, patch), top=top)
    a = _airlight_map(airlight, w)
    return w, a, patch, omega, t0, radius, eps


def dehaze_dcp(
    x: Tensor,
    *,
    patch: int = DEFAULT_PATCH,
    omega: float = DEFAULT_OMEGA,
    t0: float = DEFAULT_T0,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    airlight: Any = None,
    top: float = DEFAULT_TOP,
    refine: bool = True,
) -> Tensor:
    """Dehaze with the Dark Channel Prior.

    Parameters
    ----------
    x
        Hazy image, float ``(B, C, H, W)`` in ``[0, 1]``, any ``C``.
    patch
        Dark-channel window (He: 15).
    omega
        Fraction of haze removed (He: 0.95).
    t0
        Lower bound on the transmission in the recovery step (He: 0.1).
    radius, eps
        Guided-filter refinement radius and regularisation (see module
        docstring for the choice of defaults).
    airlight
        Atmospheric light, scalar / ``(C,)`` / ``(B, C)``; estimated from
        ``x`` with :func:`estimate_airlight` when ``None``.  Pass it when
        dehazing a tile of a larger image.
    top
        Fraction of dark-channel pixels used to estimate ``airlight``.
    refine
        Refine the transmission with the guided filter (otherwise the blocky
        raw transmission is used).

    Returns
    -------
    Tensor
        ``J = (I - A) / max(t, t0) + A`` clamped to ``[0, 1]``, shape and
        dtype of ``x``.
    """
    w, a, patch, omega, t0, radius, eps = _resolve(x, patch, omega, t0, radius, eps, airlight, top)
    t = _refined_transmission(w, a, patch, omega, radius, eps, refine)
    j = (w - a) / t.clamp(min=t0) + a
    return j.clamp(0.0, 1.0).to(x.dtype)


def dcp_receptive_field(patch: int = DEFAULT_PATCH, radius: int = DEFAULT_RADIUS, refine: bool = True) -> int:
    """Width of the input window that influences one output pixel.

    ``patch + 4 * radius`` with guided-filter refinement (two chained box
    filters of radius ``radius`` after the ``patch`` min filter), ``patch``
    without.  ``receptive_field // 2 = patch // 2 + 2 * radius`` is the halo
    a tile needs on each side for exact results.
    """
    patch = check_int(patch, "patch", 1)
    radius = check_int(radius, "radius", 0)
    return patch + 4 * radius if refine else patch


# --------------------------------------------------------------------------
# module
# --------------------------------------------------------------------------


class DarkChannelPrior(ClassicalModel):
    """Dark Channel Prior dehazing as a parameter-free :class:`~napari_nlcl.model.Model`.

    ``model(x)`` dehazes a ``(B, C, H, W)`` tensor in ``[0, 1]``;
    ``model(x, airlight=A)`` uses a given atmospheric light (what the tiling
    engine does after calling :meth:`estimate_globals` on the whole plane).
    """

    #: Above this many pixels per plane, :meth:`estimate_globals` estimates
    #: the airlight on an area-downsampled copy (the airlight is a smooth,
    #: global quantity; this bounds memory and time on very large planes).
    airlight_max_pixels: int = 2**22

    def __init__(
        self,
        *,
        patch: int = DEFAULT_PATCH,
        omega: float = DEFAULT_OMEGA,
        t0: float = DEFAULT_T0,
        radius: int = DEFAULT_RADIUS,
        eps: float = DEFAULT_EPS,
        top: float = DEFAULT_TOP,
        refine: bool = True,
    ) -> None:
        super().__init__()
        options = _check_options(patch, omega, t0, radius, eps)
        self.patch, self.omega, self.t0, self.radius, self.eps = options
        self.top = check_float(top, "top", 0.0, 1.0, lo_open=True)
        self.refine = bool(refine)
        self._set_info(
            "dehaze",
            "Dark Channel Prior",
            min_size=self.patch,
            receptive_field=dcp_receptive_field(self.patch, self.radius, self.refine),
            config={
                "patch": self.patch,
                "omega": self.omega,
                "t0": self.t0,
                "radius": self.radius,
                "eps": self.eps,
                "top": self.top,
                "refine": self.refine,
            },
        )

    def estimate_globals(self, x: Tensor) -> dict[str, Tensor]:
        """``{"airlight": (B, C)}`` estimated on the whole plane ``x``.

        Planes larger than :attr:`airlight_max_pixels` are average-pooled by
        an integer factor ``s`` first, and the dark-channel patch shrunk to
        ``round(patch / s)`` so it covers about the same scene area.
        """
        check_tensor_image(x)
        w = upcast_half(x)
        h, wd = w.shape[-2:]
        patch = self.patch
        if h * wd > self.airlight_max_pixels:
            s = math.ceil(math.sqrt(h * wd / self.airlight_max_pixels))
            w = F.avg_pool2d(w, kernel_size=s, stride=s)
            patch = max(1, round(self.patch / s))
        a = estimate_airlight(w, dark_channel(w, patch), top=self.top)
        return {"airlight": a.to(x.dtype)}

    def _airlight(self, x: Tensor, airlight: Any) -> Any:
        return self.estimate_globals(x)["airlight"] if airlight is None else airlight

    def forward(self, x: Tensor, airlight: Any = None) -> Tensor:
        """Dehazed ``x`` (same shape and dtype), clamped to ``[0, 1]``."""
        check_tensor_image(x)
        return dehaze_dcp(
            x,
            patch=self.patch,
            omega=self.omega,
            t0=self.t0,
            radius=self.radius,
            eps=self.eps,
            airlight=self._airlight(x, airlight),
            top=self.top,
            refine=self.refine,
        )

    def transmission_map(self, x: Tensor, airlight: Any = None) -> Tensor:
        """Refined transmission ``t`` in ``[0, 1]``, shape ``(B, 1, H, W)``.

        This is the map used by :meth:`forward` *before* the ``t0`` floor,
        clamped to ``[0, 1]`` (the guided filter may overshoot slightly).
        """
        check_tensor_image(x)
        w, a, patch, omega, _, radius, eps = _resolve(
            x, self.patch, self.omega, self.t0, self.radius, self.eps, self._airlight(x, airlight), self.top
        )
        t = _refined_transmission(w, a, patch, omega, radius, eps, self.refine)
        return t.clamp(0.0, 1.0).to(x.dtype)
