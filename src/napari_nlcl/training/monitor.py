"""Quality monitors: how good the model being trained is, on the user's data, without ground truth.

Unsupervised fine-tuning has no clean images to score against, and its
losses do not say whether the output is getting better (a run can climb and
then fall below the model it started from while every loss looks settled).
A monitor gives a score the trainer can keep the best model by and stop on.

:class:`ProxyPairs` is the one used by the shipped recipes: pairs whose clean
image is known, built once at the start of a run from the user's own data,
scored by the PSNR of the model's output against the known image.  Derain
(:func:`derain_proxy_pairs`) uses the user's own scenes as the *starting*
model cleans them, each carrying the rain the start finds in another crop;
dehaze (:func:`dehaze_proxy_pairs`) puts the haze the start finds (its
transmission and airlight) onto clean photos bundled with scikit-image that
no recipe trains on (or, as an option, onto the user's own frames as the
start dehazes them: no better, ``docs/finetuning.md``).  A model that starts removing scene structure, shifting
colours or leaving the user's kind of rain or haze behind loses PSNR here.  How well this follows the true
PSNR over the checkpoints of long runs is measured in
``benchmarks/monitor_study.py`` (README, fine-tuning).  The recipes build
theirs with :func:`derain_proxy_pairs` and :func:`dehaze_proxy_pairs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from napari_nlcl.nets.aecr import AECRNet
    from napari_nlcl.nets.derain import DerainNet


@dataclass
class MonitorScore:
    """One evaluation: ``score`` (higher is better) of the model at ``step``."""

    step: int
    score: float
    best_step: int
    best_score: float

    @property
    def improved(self) -> bool:
        return self.best_step == self.step


class ProxyPairs:
    """Mean PSNR (dB) of a network on fixed (input, clean) pairs; inputs and targets in [0, 1].

    ``inputs`` and ``targets`` are ``(N, C, H, W)`` tensors; the network takes
    and returns images in [0, 1] (the recipes' convention).
    """

    name = "proxy PSNR"
    unit = "dB"

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, *, batch: int = 4,
                 description: str = "", min_gain: float = 0.0):
        if inputs.shape != targets.shape or inputs.ndim != 4 or len(inputs) == 0:
            raise ValueError(f"proxy pairs need inputs and targets of one (N, C, H, W) shape, got "
                             f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
        if not (math.isfinite(min_gain) and min_gain >= 0):
            raise ValueError(f"min_gain must be a number of dB >= 0, got {min_gain!r}")
        self.inputs, self.targets = inputs.float().cpu(), targets.float().cpu()
        self.batch = int(batch)
        self.description = description
        #: the smallest gain over the *starting* model's score that this monitor resolves: the
        #: trainer keeps a later step instead of the start only when it scores more than this
        #: above the start (0: any gain); a monitor whose scores wander by tenths of a dB while
        #: the true quality does not move would otherwise hand back a step that is worse
        self.min_gain = float(min_gain)

    def __len__(self) -> int:
        return len(self.inputs)

    @torch.no_grad()
    def score(self, net: nn.Module, precision: Any = None) -> float:
        """Mean PSNR (dB) of ``net`` on the pairs; ``precision`` (a resolved
        :class:`napari_nlcl.inference.precision.Precision`, e.g. the trainer's) sets autocast and layout."""
        import contextlib

        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        autocast = precision.autocast if precision is not None else contextlib.nullcontext
        layout = precision.tensor if precision is not None else (lambda t: t)
        with _evaluating(net):
            total = 0.0
            for i in range(0, len(self.inputs), self.batch):
                x = layout(self.inputs[i:i + self.batch].to(device))
                with autocast():
                    out = net(x)
                out = out.float().clamp(0.0, 1.0).cpu()
                mse = ((out - self.targets[i:i + self.batch]) ** 2).flatten(1).mean(1)
                total += float((10 * torch.log10(1.0 / mse.clamp(min=1e-10))).sum())
            return total / len(self.inputs)


def replaces_best(score: float, best: float | None, *, best_is_start: bool, min_gain: float = 0.0) -> bool:
    """Whether a monitor ``score`` replaces the ``best`` so far (``None``: nothing kept yet).

    While the best is the starting model a step must beat it by more than ``min_gain``
    (:attr:`ProxyPairs.min_gain`); after that any gain counts.  The trainer keeps steps by this
    rule, and ``benchmarks/monitor_study.py`` picks checkpoints by it."""
    if best is None:
        return True
    return score > best + (min_gain if best_is_start else 0.0)


def kept_index(scores: list[float], min_gain: float = 0.0) -> int:
    """Index of the score a run that scored ``scores`` in turn (the start first) keeps."""
    kept = 0
    for i, s in enumerate(scores[1:], 1):
        if replaces_best(s, scores[kept], best_is_start=kept == 0, min_gain=min_gain):
            kept = i
    return kept


@contextmanager
def _evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode inside the block; afterwards back in the mode it was in."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def _spread_frames(n: int, count: int) -> np.ndarray:
    """Indices of up to ``count`` frames spread evenly over ``n`` frames."""
    return np.unique(np.linspace(0, n - 1, num=min(count, n)).round().astype(int))


def frame_crops(source, count: int, size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """``count`` crops of at most ``size`` px from frames spread over ``source`` (an ImageSource)."""
    picks = _spread_frames(len(source), count)
    crops = []
    for k in range(count):
        frame = source.frame(int(picks[k % len(picks)]))
        _, h, w = frame.shape
        ch, cw = min(size, h), min(size, w)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        crops.append(torch.from_numpy(np.ascontiguousarray(frame[:, y:y + ch, x:x + cw])))
    return crops


#: photos bundled with scikit-image (no download) that no training recipe uses: the derain
#: recipe trains on its fallback photos (``training.derain.FALLBACK_CLEAN``), and a monitor scored
#: on the photos a run trains on rises as the run learns those photos, not the user's rain
MONITOR_PHOTOS = ("stereo_motorcycle",)


def bundled_photos(names: Iterable[str]) -> list[np.ndarray]:
    """scikit-image's bundled photos ``names`` (no download; both views of a stereo pair) as
    float32 RGB in [0, 1], grey ones repeated to three channels."""
    import skimage.data

    images = []
    for name in names:
        data = getattr(skimage.data, name)()
        for im in (data[:2] if isinstance(data, tuple) else (data,)):
            im = np.asarray(im, dtype=np.float32) / 255.0
            if im.ndim == 2:
                im = np.repeat(im[..., None], 3, axis=-1)
            images.append(np.ascontiguousarray(im[..., :3]))
    return images


def monitor_photos() -> list[np.ndarray]:
    """The :data:`MONITOR_PHOTOS` (and the second view of the stereo pair) as float32 RGB in [0, 1]."""
    return bundled_photos(MONITOR_PHOTOS)


_PHOTOS: list[np.ndarray] | None = None


def photo_crops(count: int, size: tuple[int, int], channels: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """``count`` random crops of :func:`monitor_photos` (grey when ``channels`` is 1)."""
    global _PHOTOS
    if _PHOTOS is None:
        _PHOTOS = monitor_photos()
    photos = _PHOTOS
    h, w = size
    crops = []
    for _ in range(count):
        im = photos[int(rng.integers(len(photos)))]
        ph, pw = im.shape[:2]
        if ph < h or pw < w:
            scale = max(h / ph, w / pw)
            t = torch.from_numpy(im).permute(2, 0, 1)[None]
            t = torch.nn.functional.interpolate(t, size=(math.ceil(ph * scale), math.ceil(pw * scale)),
                                                mode="bilinear", align_corners=False)[0]
            im = t.permute(1, 2, 0).numpy()
            ph, pw = im.shape[:2]
        y = int(rng.integers(0, ph - h + 1))
        x = int(rng.integers(0, pw - w + 1))
        c = torch.from_numpy(np.ascontiguousarray(im[y:y + h, x:x + w])).permute(2, 0, 1)
        if channels == 1:
            c = luma(c)
        elif channels != 3:
            c = c.mean(0, keepdim=True).expand(channels, h, w).clone()
        crops.append(c)
    return crops


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB tensors ``(..., 3, H, W)``, as ``(..., 1, H, W)``."""
    return (rgb * rgb.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(-3, keepdim=True)


# ----------------------------------------------------------------------------- proxy pairs of the recipes
def _random_crop(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A crop of at most ``size`` x ``size`` of ``(C, H, W)`` ``x`` at a random place (a copy)."""
    h, w = x.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    y = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    return x[..., y:y + ch, x0:x0 + cw].clone()


def _network_input(frame: torch.Tensor, net: nn.Module, device: torch.device) -> torch.Tensor:
    """``(C, H, W)`` ``frame`` as a batch of one on ``device``; a grey frame for a colour network repeated."""
    o = frame[None].to(device)
    if o.shape[1] == 1 and (net.info.in_channels or 1) > 1:  # grey frames, colour network
        o = o.repeat(1, net.info.in_channels, 1, 1)
    return o


def _pairs_of_one_size(inputs: list[torch.Tensor], targets: list[torch.Tensor], description: str,
                       min_gain: float = 0.0) -> ProxyPairs:
    """:class:`ProxyPairs` of the pairs, all cropped to the smallest (frames may differ in size)."""
    h = min(t.shape[-2] for t in inputs)
    w = min(t.shape[-1] for t in inputs)
    return ProxyPairs(torch.stack([t[..., :h, :w] for t in inputs]), torch.stack([t[..., :h, :w] for t in targets]),
                      description=description, min_gain=min_gain)


@torch.no_grad()
def derain_proxy_pairs(net: DerainNet, source: Any, *, pairs: int = 16, size: int = 160, seed: int = 0,
                       gains: tuple = (1.0,)) -> ProxyPairs:
    """:class:`ProxyPairs` made of the user's own scenes: crops of the rainy frames ``source``
    as ``net`` (the start) cleans them, ``B_i``, each carrying the rain ``net`` finds in
    another crop, ``R_j = O_j - B_j`` (clipped at 0, scaled by each of ``gains`` in turn);
    the target is ``B_i``.

    A model that keeps the user's scenes as the start did and removes the user's kind of
    rain scores high; one that darkens bright regions or takes scene detail away loses
    PSNR here, on the scenes it is meant for.  Pairs on other photos miss this: they rise
    with the transplant term, which trains on the same kind of pairs (``monitor_study.py``:
    rank correlation with the true PSNR -0.6 to 0.3 within a run, against 0.2 to 0.9 for these).
    The start's own leftover rain is in the targets, so a model that removes it is not
    rewarded for that: the score leans toward the start."""
    rng = np.random.default_rng(seed)
    device = next(net.parameters()).device
    backgrounds, rains = [], []
    with _evaluating(net):
        m = max(int(net.info.size_multiple or 1), 1)
        for crop in frame_crops(source, max(pairs, 2), size, rng):
            h, w = crop.shape[-2:]
            o = _network_input(crop[..., : h - h % m or h, : w - w % m or w], net, device)  # the size multiple
            b = net(o).clamp(0.0, 1.0)
            backgrounds.append(b.cpu()[0])
            rains.append((o - b).clamp(min=0.0).cpu()[0])
    n = len(backgrounds)
    inputs, targets = [], []
    for k in range(n):
        clean, rain = backgrounds[k], rains[(k + 1) % n] * float(gains[k % len(gains)])
        h, w = min(clean.shape[-2], rain.shape[-2]), min(clean.shape[-1], rain.shape[-1])
        inputs.append((clean[..., :h, :w] + rain[..., :h, :w]).clamp(0.0, 1.0))
        targets.append(clean[..., :h, :w])
    return _pairs_of_one_size(inputs, targets, f"{n} crops of the user's frames as the start model "
                              "cleans them, each carrying the rain the start finds in another crop")


#: the dehaze monitor's margin over the start (:attr:`ProxyPairs.min_gain`, dB).  On the dehaze
#: validation set the exact fine-tuning command moves the true PSNR by -0.14..+0.09 dB while the
#: monitor wanders by up to +0.25 dB above its start score, with no relation to the truth (rank
#: correlation -0.1 over 13 checkpoints).  It sees large losses (a run at lr 2e-4 that fell 3.5 dB:
#: rank 0.89), not moves of a few tenths, so a step replaces the start only when it scores more
#: than this above it (docs/finetuning.md, "Keeping the start")
DEHAZE_MIN_GAIN = 0.3
#: the clean crops of :func:`dehaze_proxy_pairs`: bundled photos, or the user's own frames as the
#: start dehazes them
MONITOR_SCENES = ("photos", "own")


@torch.no_grad()
def dehaze_proxy_pairs(net: AECRNet, source: Any, *, pairs: int = 16, size: int = 160, seed: int = 0,
                       min_gain: float = DEHAZE_MIN_GAIN, scenes: str = "photos") -> ProxyPairs:
    """:class:`ProxyPairs` under the haze the start finds in the user's frames ``source``: the
    transmission ``t`` and airlight ``A`` that ``net`` estimates on whole frames (so the
    airlight sees the whole plane; the Dark Channel Prior's estimates for a network without a
    physics output), laid as ``C t + A (1 - t)`` over clean crops ``C``.

    ``scenes="photos"``: the clean crops are photos bundled with scikit-image.  ``"own"``: they
    are the user's own frames as the start dehazes them, each under the haze of another frame
    (as :func:`derain_proxy_pairs` does with rain)."""
    from napari_nlcl.classical.dcp import dark_channel, estimate_airlight

    if scenes not in MONITOR_SCENES:
        raise ValueError(f"scenes must be one of {MONITOR_SCENES}, got {scenes!r}")
    rng = np.random.default_rng(seed)
    device = next(net.parameters()).device
    # one crop (at most size x size) of each frame's haze and of its dehazed scene, cut as the
    # frame is done: a stack of large frames is never held whole
    frames = _spread_frames(len(source), pairs)
    n = len(frames)
    per = -(-pairs // n)  # crops per frame: a single image still gives `pairs` different pairs
    hazes, scenes_ = [], []
    with _evaluating(net):
        for i in frames:
            o = _network_input(torch.from_numpy(np.ascontiguousarray(source.frame(int(i)))), net, device)
            j, t, a = net.decompose(o)
            if t is None:
                a = estimate_airlight(o, dark_channel(o, 15), 0.001)
                t = 1 - 0.95 * dark_channel(o / a.reshape(1, -1, 1, 1).clamp(min=1e-3), 15)
            t, a = t.clamp(0.05, 1.0)[0], a.reshape(-1).cpu()
            hazes.append([(_random_crop(t, size, rng).cpu(), a) for _ in range(per)])
            if scenes == "own":
                scenes_.append([_random_crop(j.clamp(0.0, 1.0)[0], size, rng).cpu() for _ in range(per)])
    inputs, targets = [], []
    for k in range(pairs):
        tc, a = hazes[k % n][k // n]
        if scenes == "own":  # the scene of another frame, both cut to the smaller size
            clean = scenes_[(k + 1) % n][k // n]
            ch, cw = min(tc.shape[-2], clean.shape[-2]), min(tc.shape[-1], clean.shape[-1])
            tc, clean = tc[:, :ch, :cw], clean[:, :ch, :cw]
        else:
            clean = photo_crops(1, tuple(tc.shape[-2:]), a.numel(), rng)[0]
        inputs.append((clean * tc + a[:, None, None] * (1 - tc)).clamp(0.0, 1.0))
        targets.append(clean)
    what = "the user's frames as the start dehazes them" if scenes == "own" else "clean photo crops"
    return _pairs_of_one_size(inputs, targets, f"{pairs} crops of {what} under the haze the start model "
                              "finds in the user's frames", min_gain=min_gain)
