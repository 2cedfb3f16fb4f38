"""Streak filters and the rain-angle estimator of the directional derainer.

The building blocks of :mod:`napari_nlcl.classical.directional` (whose
docstring describes the method, its locality and its tuning):

* :func:`horizontal_opening`, :func:`white_tophat` and :func:`streak_tophat`:
  thin bright structures along a row, the streak candidates;
* :func:`line_mean` and :func:`line_opening`: mean and grey opening along a
  near-vertical segment, sampled on a shear (integer row offsets, linear
  interpolation between columns) so that they are translation invariant;
* :func:`estimate_rain_angle`: the dominant streak direction of an image
  plane, from the autocorrelation of its clipped top-hat;
* :func:`batch_angles`: an angle argument (number, sequence or tensor) as
  one checked value per batch element.

Angles are in degrees in the convention of :func:`napari_nlcl.synth.add_rain`:
0 is vertical, positive means the top end of a streak leans right (``/``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_nlcl.checks import check_finite_tensor, check_float, check_int, check_tensor_image
from napari_nlcl.classical.filters import upcast_half

__all__ = [
    "batch_angles",
    "estimate_rain_angle",
    "streak_tophat",
    "horizontal_opening",
    "line_mean",
    "line_opening",
    "white_tophat",
]

#: Defaults of the angle estimator, shared with the derainer
#: (:mod:`napari_nlcl.classical.directional`).
DEFAULT_WIDTH = 9
DEFAULT_MAX_ANGLE = 35.0

#: Largest |angle| (degrees) :func:`line_mean` accepts: its row-wise shear
#: sampling needs at most one column step per row.
MAX_LINE_ANGLE = 45.0

# angle estimator settings (see step 3 of the napari_nlcl.classical.directional docstring)
_ANGLE_STEP = 0.25  # degrees between candidate angles
_ANGLE_LAGS = 21  # autocorrelation summed over lags 1 .. _ANGLE_LAGS px
_ANGLE_SMOOTH = 1.0  # Gaussian sigma (px) applied to the autocorrelation window
_CLIP_QUANTILE = 0.75  # the top-hat is clipped at this quantile
_QUANTILE_SAMPLES = 2**20  # at most this many pixels for the quantile


# --------------------------------------------------------------------------
# angle arguments
# --------------------------------------------------------------------------


def _check_angle_value(value: float, limit: float, name: str = "angle") -> float:
    if not math.isfinite(value) or abs(value) > limit:
        raise ValueError(
            f"{name} must be a finite angle in degrees within [-{limit:g}, {limit:g}] "
            f"(0 = vertical streaks, positive = top end to the right), got {value!r}"
        )
    return value


def batch_angles(angle: Any, batch: int, limit: float = MAX_LINE_ANGLE) -> list[float]:
    """Angle given as a number, a sequence, or a tensor ``(B,)`` / ``(1,)`` -> B floats.

    Each value must be finite and within ``[-limit, limit]`` degrees
    (``ValueError`` otherwise); a single value is used for every element.

    >>> batch_angles(10, 2)
    [10.0, 10.0]
    >>> batch_angles(torch.tensor([-5.0, 20.0]), 2)
    [-5.0, 20.0]
    """
    if isinstance(angle, Tensor):
        values = angle.detach().reshape(-1).double().cpu().tolist()
    elif isinstance(angle, (int, float)) and not isinstance(angle, bool):
        values = [float(angle)]
    elif isinstance(angle, (list, tuple)):
        try:
            values = [float(a) for a in angle]
        except (TypeError, ValueError):
            raise ValueError(f"angle must be a number or a sequence of numbers, got {angle!r}") from None
    else:
        raise TypeError(
            f"angle must be a float (degrees), a sequence of floats or a tensor (B,), got {type(angle).__name__}"
        )
    if len(values) == 1:
        values = values * batch
    if len(values) != batch:
        raise ValueError(f"angle has {len(values)} values for a batch of {batch} image(s)")
    return [_check_angle_value(v, limit) for v in values]


# --------------------------------------------------------------------------
# morphology and directional filters
# --------------------------------------------------------------------------


def horizontal_opening(x: Tensor, width: int) -> Tensor:
    """Grey opening with a flat horizontal line of ``width`` pixels.

    Erosion (``-max_pool(-x)``) followed by dilation (``max_pool``) with
    kernel ``(1, width)``, replicate-padded; the dilation uses the reflected
    element, so the result is a true opening (``opening(x) <= x``, idempotent)
    also for even ``width``.  Depends on ``width - 1`` columns each side.
    """
    check_tensor_image(x)
    width = check_int(width, "width", 1)
    if width == 1:
        return x.clone()
    w = upcast_half(x)
    lo, hi = width // 2, (width - 1) // 2
    e = -F.max_pool2d(F.pad(-w, (lo, hi, 0, 0), mode="replicate"), kernel_size=(1, width), stride=1)
    d = F.max_pool2d(F.pad(e, (hi, lo, 0, 0), mode="replicate"), kernel_size=(1, width), stride=1)
    return d.to(x.dtype)


def white_tophat(x: Tensor, width: int) -> Tensor:
    """``x - horizontal_opening(x, width)`` (>= 0): bright structures thinner
    than ``width`` pixels along a row."""
    return x - horizontal_opening(x, width)


def streak_tophat(x: Tensor, width: int) -> Tensor:
    """White top-hat of the channel minimum -> ``(B, 1, H, W)``, float32 for half inputs.

    Rain is grey and additive: it raises all channels, so a thin structure
    that is bright in the channel minimum is bright in every channel.  This
    is ``T`` of the directional derainer (steps 1-2 of the
    :mod:`napari_nlcl.classical.directional` docstring).
    """
    return white_tophat(upcast_half(x).amin(dim=1, keepdim=True), width)


def _sheared_samples(x: Tensor, length: float, angle: float):
    """Yield ``x`` sampled along a near-vertical segment through each pixel.

    The segment has ``2 h + 1`` samples at integer row offsets
    ``t = -h .. h`` (``h = round(length cos(angle) / 2)``, at least 1) and
    column offsets ``-t tan(angle)``, linearly interpolated between the two
    nearest columns; ``x`` is replicate-padded.  Yields ``(B, C, H, W)``
    tensors, then returns.  For ``|angle| <= 45`` a sample is at most
    ``h <= ceil(length / 2)`` rows and columns away from its pixel.
    """
    theta = math.radians(angle)
    h = max(1, int(round(length * math.cos(theta) / 2.0)))
    slope = -math.tan(theta)  # column offset per row step (top end right for angle > 0)
    cpad = int(math.ceil(h * abs(slope))) + 1
    rows, cols = x.shape[-2:]
    xp = F.pad(x, (cpad, cpad, h, h), mode="replicate")
    for t in range(-h, h + 1):
        s = t * slope
        s0 = math.floor(s)
        f = s - s0
        r0, c0 = h + t, cpad + s0
        v = xp[..., r0 : r0 + rows, c0 : c0 + cols]
        if f > 1e-9:
            v = (1.0 - f) * v + f * xp[..., r0 : r0 + rows, c0 + 1 : c0 + 1 + cols]
        yield v


def _line_mean_one(x: Tensor, length: float, angle: float) -> Tensor:
    acc = torch.zeros_like(x)
    n = 0
    for v in _sheared_samples(x, length, angle):
        acc += v
        n += 1
    return acc / n


def _line_extreme_one(x: Tensor, length: float, angle: float, op) -> Tensor:
    out = None
    for v in _sheared_samples(x, length, angle):
        out = v.clone() if out is None else op(out, v, out=out)
    return out


def _line_opening_one(x: Tensor, length: float, angle: float) -> Tensor:
    # the segment is symmetric about its pixel, so it equals its reflection
    e = _line_extreme_one(x, length, angle, torch.minimum)
    return _line_extreme_one(e, length, angle, torch.maximum)


def _per_angle(fn, x: Tensor, length: float, angles: list[float]) -> Tensor:
    if len(set(angles)) == 1:
        return fn(x, length, angles[0])
    return torch.cat([fn(x[i : i + 1], length, a) for i, a in enumerate(angles)])


def line_mean(x: Tensor, length: float, angle: Any) -> Tensor:
    """Mean of ``x`` along a straight segment of about ``length`` pixels.

    Parameters
    ----------
    x
        Float tensor ``(B, C, H, W)``.
    length
        Segment length in pixels (``>= 1``) measured along the segment.
    angle
        Direction in degrees (``add_rain`` convention: 0 is vertical, positive
        tilts the top end to the right), a number or one value per batch
        element; ``|angle| <= 45``.

    Returns
    -------
    Tensor
        ``(B, C, H, W)``.  The segment is sampled at ``2 h + 1`` integer row
        offsets ``t`` (``h = round(length cos(angle) / 2)``) at column
        offset ``-t tan(angle)``, linearly interpolated between columns;
        borders are replicate-padded.  Translation invariant (a shear, not a
        rotation), so tiled evaluation is exact.
    """
    check_tensor_image(x)
    length = check_float(length, "length", 1.0, math.inf)
    angles = batch_angles(angle, x.shape[0])
    return _per_angle(_line_mean_one, upcast_half(x), length, angles).to(x.dtype)


def line_opening(x: Tensor, length: float, angle: Any) -> Tensor:
    """Grey opening along a straight segment of about ``length`` pixels.

    Minimum over the segment through each pixel (erosion), then maximum over
    the segment (dilation), with the samples of :func:`line_mean`.  Keeps
    bright structures that contain a segment of that length in that
    direction -- the body of a streak -- and flattens everything shorter.
    Because of the linear interpolation between columns it is an opening
    only up to that interpolation (combine with ``torch.minimum(x, ...)``
    where ``<= x`` matters).  Parameters as in :func:`line_mean`.
    """
    check_tensor_image(x)
    length = check_float(length, "length", 1.0, math.inf)
    angles = batch_angles(angle, x.shape[0])
    return _per_angle(_line_opening_one, upcast_half(x), length, angles).to(x.dtype)


# --------------------------------------------------------------------------
# angle
# --------------------------------------------------------------------------


def _clipped_tophat(x: Tensor, width: int) -> Tensor:
    t = streak_tophat(x, width)
    flat = t.reshape(t.shape[0], -1)
    step = max(1, flat.shape[1] // _QUANTILE_SAMPLES)
    sample = flat[:, ::step]
    k = max(1, int(round(_CLIP_QUANTILE * sample.shape[1])))
    q = sample.kthvalue(k, dim=1).values
    return torch.minimum(t, q[:, None, None, None])


def _autocorr_window(t: Tensor, radius: int) -> Tensor:
    """Autocorrelation of mean-free ``t`` (zero-padded, no wrap-around) at lags
    ``-radius .. radius`` in both axes -> ``(B, 1, 2 radius + 1, 2 radius + 1)``
    float64 on the CPU (float32 computation on devices without float64)."""
    _, _, h, w = t.shape
    acc = torch.float32 if t.device.type == "mps" else torch.float64
    t = t.to(acc)
    t = t - t.mean(dim=(-2, -1), keepdim=True)
    fh, fw = 2 * h, 2 * w
    spec = torch.fft.rfft2(t, s=(fh, fw))
    a = torch.fft.irfft2(spec * spec.conj(), s=(fh, fw))
    idx_r = torch.arange(-radius, radius + 1, device=t.device) % fh
    idx_c = torch.arange(-radius, radius + 1, device=t.device) % fw
    return a[:, :, idx_r][:, :, :, idx_c].double().cpu() / (h * w)


def _ray_energy(win: Tensor, angles: Tensor, lags: int, sigma: float) -> Tensor:
    """Autocorrelation summed along rays of lags ``1 .. lags`` -> ``(B, n_angles)``."""
    radius = (win.shape[-1] - 1) // 2
    if sigma > 0:
        r = int(math.ceil(3 * sigma))
        k = torch.arange(-r, r + 1, dtype=win.dtype)
        g = torch.exp(-k * k / (2 * sigma * sigma))
        g = g / g.sum()
        win = F.pad(win, (r, r, r, r), mode="replicate")
        win = F.conv2d(F.conv2d(win, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    theta = torch.deg2rad(angles.double())
    ts = torch.arange(1, lags + 1, dtype=torch.float64)
    rows = ts[None, :] * torch.cos(theta)[:, None]  # (n_angles, lags)
    cols = -ts[None, :] * torch.sin(theta)[:, None]
    grid = torch.stack([cols / radius, rows / radius], dim=-1)[None].expand(win.shape[0], -1, -1, -1)
    samples = F.grid_sample(win, grid.to(win.dtype), mode="bilinear", align_corners=True)
    return samples.sum(dim=-1)[:, 0]


def estimate_rain_angle(
    x: Tensor,
    width: int = DEFAULT_WIDTH,
    max_angle: float = DEFAULT_MAX_ANGLE,
    *,
    return_energy: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """Dominant rain-streak direction per batch element, in degrees -> ``(B,)``.

    Parameters
    ----------
    x
        Rainy image ``(B, C, H, W)`` in ``[0, 1]``, any ``C``.
    width
        Top-hat width (pixels), as used for the removal.
    max_angle
        Search range ``[-max_angle, max_angle]`` degrees (at most 45), in
        0.25 degree steps.
    return_energy
        Also return the candidate angles ``(n,)`` and the directional energy
        ``(B, n)`` (diagnostics: a flat curve means no dominant direction).

    Returns
    -------
    Tensor
        Angles (float32, on the CPU) in the convention of
        :func:`napari_nlcl.synth.add_rain`: 0 is vertical, positive means the
        top end of a streak leans right (``/``).

    Notes
    -----
    See step 3 of the :mod:`napari_nlcl.classical.directional` docstring.
    The cost is one FFT of twice the image size; callers with very large
    planes should pass a crop (:meth:`DirectionalDerain.estimate_globals
    <napari_nlcl.classical.directional.DirectionalDerain.estimate_globals>`
    does).
    """
    check_tensor_image(x)
    check_finite_tensor(x)
    width = check_int(width, "width", 1)
    max_angle = check_float(max_angle, "max_angle", 0.0, MAX_LINE_ANGLE)
    t = _clipped_tophat(x, width)
    radius = _ANGLE_LAGS + int(math.ceil(3 * _ANGLE_SMOOTH)) + 1
    win = _autocorr_window(t, radius)
    n = int(round(max_angle / _ANGLE_STEP))
    angles = torch.arange(-n, n + 1, dtype=torch.float64) * _ANGLE_STEP
    energy = _ray_energy(win, angles, _ANGLE_LAGS, _ANGLE_SMOOTH)
    best = angles[energy.argmax(dim=1)]
    spread = energy.amax(dim=1) - energy.amin(dim=1)
    flat = spread <= 1e-9 * energy.abs().amax(dim=1).clamp(min=1e-30)
    best = torch.where(flat, torch.zeros_like(best), best).float()
    if return_energy:
        return best, angles, energy
    return best
