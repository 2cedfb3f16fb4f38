"""Network operations that torch does not ship, written here so torchvision stays optional.

``reflect_pad`` / ``ReflectConv2d`` are reflection padding that keeps a ``channels_last``
tensor in that layout (torch's ``reflection_pad2d`` converts it to NCHW and the next
convolution converts it back: two extra passes over the tensor, a quarter of the time of
the translation network on the CPU).  Same values and gradients as ``F.pad(mode="reflect")``
(tested).

``deform_conv2d`` is the modulated deformable convolution (DCN v2, Zhu et al.
2019) with the argument and offset layout of ``torchvision.ops.deform_conv2d``:
``offset`` is ``(N, 2 * kh * kw, Ho, Wo)`` holding ``(dy, dx)`` for kernel
position ``k = i * kw + j`` in channels ``2k, 2k + 1``, and ``mask`` is
``(N, kh * kw, Ho, Wo)``.  Samples that fall outside the image read zeros
(bilinear interpolation with zero padding), as in torchvision.

The implementation gathers all ``kh * kw`` shifted copies of the input with a
single :func:`torch.nn.functional.grid_sample` call and contracts them with
the weights, so it runs on every device torch runs on (CPU, CUDA, MPS) and is
differentiable with respect to input, offsets, mask and weights.  When
torchvision is importable, ``DeformConv2d`` may use its fused kernel instead
(``use_torchvision=True``); the two agree to float precision (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DeformConv2d", "ReflectConv2d", "deform_conv2d", "full_precision", "reflect_pad",
           "torchvision_deform_conv2d"]


def full_precision(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` in float32 inside an autocast region (unchanged outside one): for the last
    layer of a network whose output is the image, which bfloat16 would round to 8 bits."""
    with torch.autocast(x.device.type, enabled=False):
        return module(x.float())


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``F.pad(x, (pad,) * 4, mode="reflect")`` for ``(B, C, H, W)``, in ``x``'s memory layout."""
    if pad == 0:
        return x
    b, c, h, w = x.shape
    if pad >= h or pad >= w:
        return F.pad(x, (pad,) * 4, mode="reflect")  # torch's message for a too-small input
    layout = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last)
                                     and not x.is_contiguous()) else torch.contiguous_format
    if layout is torch.contiguous_format:
        return F.pad(x, (pad,) * 4, mode="reflect")
    p = pad
    out = torch.empty((b, c, h + 2 * p, w + 2 * p), dtype=x.dtype, device=x.device, memory_format=layout)
    out[:, :, p:p + h, p:p + w] = x
    out[:, :, :p, p:p + w] = x[:, :, 1:p + 1].flip(2)
    out[:, :, p + h:, p:p + w] = x[:, :, h - p - 1:h - 1].flip(2)
    out[:, :, :, :p] = out[:, :, :, p + 1:2 * p + 1].flip(3)
    out[:, :, :, p + w:] = out[:, :, :, w - 1:p + w - 1].flip(3)
    return out


class ReflectConv2d(nn.Conv2d):
    """``nn.Conv2d(..., padding=p, padding_mode="reflect")`` (same parameters and state dict)
    whose padding keeps a ``channels_last`` input in its layout (:func:`reflect_pad`)."""

    def __init__(self, *args, **kwargs):
        kwargs["padding_mode"] = "reflect"
        super().__init__(*args, **kwargs)
        if len(set(self.padding)) != 1 or not isinstance(self.padding[0], int):
            raise ValueError("ReflectConv2d needs one integer padding for all sides")

    def _conv_forward(self, input, weight, bias):  # noqa: A002 - torch's signature
        return F.conv2d(reflect_pad(input, self.padding[0]), weight, bias, self.stride, 0,
                        self.dilation, self.groups)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def torchvision_deform_conv2d():
    """``torchvision.ops.deform_conv2d`` when torchvision imports cleanly, else ``None``."""
    try:
        from torchvision.ops import deform_conv2d as tv_deform  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - missing, or a wheel built for another torch
        return None
    return tv_deform


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated deformable 2-D convolution (torchvision semantics, one offset group)."""
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError("deform_conv2d expects x (N, C, H, W) and weight (Cout, C, kh, kw)")
    n, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    if cin != c:
        raise ValueError(f"weight expects {cin} input channels, x has {c}")
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    k = kh * kw
    if offset.shape != (n, 2 * k, ho, wo):
        raise ValueError(f"offset must have shape {(n, 2 * k, ho, wo)}, got {tuple(offset.shape)}")
    if mask is not None and mask.shape != (n, k, ho, wo):
        raise ValueError(f"mask must have shape {(n, k, ho, wo)}, got {tuple(mask.shape)}")

    dtype = x.dtype
    # sampling positions in input pixels: base grid + kernel tap + learned offset
    ys = torch.arange(ho, device=x.device, dtype=dtype) * sh - ph
    xs = torch.arange(wo, device=x.device, dtype=dtype) * sw - pw
    ky = (torch.arange(kh, device=x.device, dtype=dtype) * dh).repeat_interleave(kw)
    kx = (torch.arange(kw, device=x.device, dtype=dtype) * dw).repeat(kh)
    off = offset.view(n, k, 2, ho, wo)
    py = ys.view(1, 1, ho, 1) + ky.view(1, k, 1, 1) + off[:, :, 0]
    px = xs.view(1, 1, 1, wo) + kx.view(1, k, 1, 1) + off[:, :, 1]
    # grid_sample (align_corners=False) reads pixel p at (2p + 1) / size - 1;
    # zeros padding reproduces torchvision's rule for samples outside the image
    gy = (2.0 * py + 1.0) / h - 1.0
    gx = (2.0 * px + 1.0) / w - 1.0
    grid = torch.stack((gx, gy), dim=-1).view(n, k * ho, wo, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(n, c, k, ho, wo)
    if mask is not None:
        cols = cols * mask.view(n, 1, k, ho, wo)
    out = torch.einsum("nckhw,ock->nohw", cols, weight.reshape(cout, c, k))
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """DCN v2 layer: offsets and modulation mask predicted from the input by a plain conv.

    The offset/mask conv starts at zero (offsets 0, mask 0.5), so a new layer
    behaves like a regular convolution and learns where to look.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *,
                 stride: int = 1, padding: int = 1, dilation: int = 1, bias: bool = True,
                 use_torchvision: bool = False):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.kernel_size = kernel_size
        k = kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.offset_mask = nn.Conv2d(in_channels, 3 * k, kernel_size, stride=stride,
                                     padding=padding, dilation=dilation)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)
        self.use_torchvision = use_torchvision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size * self.kernel_size
        om = self.offset_mask(x)
        offset, mask = om[:, : 2 * k], torch.sigmoid(om[:, 2 * k :])
        fn = torchvision_deform_conv2d() if self.use_torchvision else None
        if fn is not None:
            return fn(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                      dilation=self.dilation, mask=mask)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride,
                             padding=self.padding, dilation=self.dilation, mask=mask)
