"""The torch rain banks (napari_nlcl.synth.banks) the derain recipe trains on: streaks, sheets,
drizzle, the veil and downpours, and the recipe settings that choose them."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nlcl.synth.banks import add_bank_rain, make_rain_bank, veil_field
from napari_nlcl.training import build_recipe
from napari_nlcl.training.derain_config import DerainConfig


def test_bank_rain_is_additive_seeded_and_grey():
    bank, angles = make_rain_bank(6, 64, seed=3)
    assert bank.shape == (6, 1, 64, 64) and np.all(np.diff(angles) >= 0)
    clean = torch.rand(3, 3, 48, 80) * 0.8
    a = add_bank_rain(clean, bank, torch.Generator().manual_seed(0))
    b = add_bank_rain(clean, bank, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert (a >= clean - 1e-6).all() and (a - clean).sum() > 0
    # screen blend of a grey layer: the added light is (1 - I) * s, the same s on every channel
    s = (a - clean) / (1 - clean)
    assert torch.allclose(s[:, 0], s[:, 1], atol=1e-5)


def test_additive_rain_adds_the_same_light_everywhere_below_white():
    bank, _ = make_rain_bank(4, 64, seed=1)
    clean = torch.rand(4, 3, 48, 64) * 0.5
    a = add_bank_rain(clean, bank, torch.Generator().manual_seed(0), additive=1.0, veil=1.0)
    added = a - clean
    assert (added >= -1e-6).all() and added.mean() > 0.005
    # O = min(B + R, 1) with a grey R: equal on every channel below white, unlike the screen blend
    below = (a < 1).all(1)
    assert below.float().mean() > 0.5
    for c in (1, 2):
        assert torch.allclose(added[:, 0][below], added[:, c][below], atol=1e-5)
    with pytest.raises(ValueError, match="additive"):
        DerainConfig(additive=-1)


def test_veil_follows_the_amount_of_rain_with_veil_ref():
    dry = torch.zeros(1, 1, 64, 64)  # a bank without streaks: only the veil can add light
    clean = torch.full((8, 3, 32, 32), 0.2)
    free = add_bank_rain(clean, dry, torch.Generator().manual_seed(0), veil=1.0, veil_max=0.3)
    tied = add_bank_rain(clean, dry, torch.Generator().manual_seed(0), veil=1.0, veil_max=0.3, veil_ref=0.1)
    assert (free - clean).mean() > 0.02  # independent veil: present without rain
    assert torch.equal(tied, clean)  # tied to the rain: no streaks, no veil
    bank, _ = make_rain_bank(4, 64, seed=1)
    heavy = add_bank_rain(clean, bank, torch.Generator().manual_seed(0), veil=1.0, veil_max=0.3, veil_ref=1e-6)
    streaks = add_bank_rain(clean, bank, torch.Generator().manual_seed(0), veil=0.0)
    assert (heavy - streaks).mean() > 0.02


def test_downpour_is_a_strong_grey_veil_seen_through_streaks():
    bank, _ = make_rain_bank(4, 64, seed=1)
    clean = torch.rand(6, 3, 48, 64) * 0.4
    light = add_bank_rain(clean, bank, torch.Generator().manual_seed(0), veil=0.0)
    heavy, veil = add_bank_rain(clean, bank, torch.Generator().manual_seed(0), veil=0.0, downpour=1.0,
                                downpour_veil=(0.2, 0.3), return_veil=True)
    assert veil.mean() > 0.12 and (heavy - clean).mean() > (light - clean).mean() + 0.1
    # always added (O = min(B + R, 1), grey) and streaked: the rain above the veil has texture
    added = heavy - clean
    below = (heavy < 1).all(1)
    assert torch.allclose(added[:, 0][below], added[:, 2][below], atol=1e-5)
    streaks = added.mean(1, keepdim=True) - veil
    assert streaks.std() > 0.01 and (streaks > -1e-5).all()
    # downpour=0 draws nothing more: the seeded stream and output are those of before
    assert torch.equal(add_bank_rain(clean, bank, torch.Generator().manual_seed(0), veil=0.0, downpour=0.0), light)
    for bad, match in (({"downpour": 1.5}, "downpour is a probability"), ({"downpour_veil": (0.5, 0.1)}, "downpour_veil")):
        with pytest.raises(ValueError, match=match):
            DerainConfig(**bad)


def _correlation(a: torch.Tensor, lag: int, dim: int) -> float:
    """Autocorrelation of the maps ``(N, 1, H, W)`` at ``lag`` pixels along ``dim``."""
    a = a - a.mean((-2, -1), keepdim=True)
    n = a.shape[dim]
    return float((a.narrow(dim, lag, n - lag) * a.narrow(dim, 0, n - lag)).mean() / (a * a).mean())


def test_sheet_bank_holds_longer_wider_streaks_and_downpours_use_it():
    streaks, _ = make_rain_bank(24, 128, seed=2)
    sheets, angles = make_rain_bank(24, 128, seed=2, kind="sheets")
    assert sheets.shape == streaks.shape and np.all(np.diff(angles) >= 0) and np.abs(angles).max() <= 30
    # long: correlated far down the streak; wide: correlated across it
    assert _correlation(sheets, 24, -2) > _correlation(streaks, 24, -2) + 0.15
    assert _correlation(sheets, 3, -1) > _correlation(streaks, 3, -1) + 0.15
    with pytest.raises(ValueError, match="kind must be one of"):
        make_rain_bank(2, 32, kind="hail")

    clean = torch.rand(4, 3, 96, 96) * 0.4
    kw = {"veil": 0.0, "downpour": 1.0, "downpour_veil": (0.0, 0.0), "blur": 0.0}
    plain = add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), **kw)
    sheeted = add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), **kw, sheets=1.0, sheet_bank=sheets)
    rain_plain, rain_sheet = (plain - clean).mean(1, keepdim=True), (sheeted - clean).mean(1, keepdim=True)
    assert _correlation(rain_sheet, 3, -1) > _correlation(rain_plain, 3, -1) + 0.3
    assert _correlation(rain_sheet, 8, -2) > _correlation(rain_plain, 8, -2) + 0.15
    assert (rain_sheet > -1e-6).all() and rain_sheet.mean() > 0.01
    # sheets only change downpours, and sheets=0 draws nothing more (the seeded stream of before)
    light = add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), veil=0.0)
    assert torch.equal(add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), veil=0.0, sheets=1.0,
                                     sheet_bank=sheets), light)
    assert torch.equal(add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), **kw, sheet_bank=sheets), plain)
    with pytest.raises(ValueError, match="needs a sheet_bank"):
        add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), **kw, sheets=0.5)
    with pytest.raises(ValueError, match="downpour_sheets is a probability"):
        DerainConfig(downpour_sheets=2.0)


def test_drizzle_is_light_rain_of_short_thin_streaks_at_several_depths():
    streaks, _ = make_rain_bank(24, 128, seed=2)
    drizzle, angles = make_rain_bank(24, 128, seed=2, kind="drizzle")
    assert drizzle.shape == streaks.shape and np.all(np.diff(angles) >= 0) and np.abs(angles).max() <= 30
    assert _correlation(drizzle, 24, -2) < _correlation(streaks, 24, -2)  # short streaks
    assert _correlation(drizzle, 3, -1) < _correlation(streaks, 3, -1)  # thin
    clean = torch.rand(6, 3, 96, 96) * 0.4
    kw = dict(veil=0.0, blur=1.5)
    plain = add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), **kw)
    light = add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), **kw, drizzle=1.0, drizzle_bank=drizzle)
    rain = light - clean
    assert (rain > -1e-6).all() and 0.005 < float(rain.mean()) < float((plain - clean).mean()) + 0.1
    assert not torch.equal(light, plain)
    # drizzle=0 draws nothing more: the seeded stream and output are those of before
    assert torch.equal(add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), **kw, drizzle_bank=drizzle), plain)
    with pytest.raises(ValueError, match="needs a drizzle_bank"):
        add_bank_rain(clean, streaks, torch.Generator().manual_seed(0), drizzle=0.5)
    with pytest.raises(ValueError, match="drizzle is a probability"):
        DerainConfig(drizzle=1.5)
    small = {"rain_bank": 8, "rain_bank_size": 64}
    assert build_recipe("derain", DerainConfig(**small), device="cpu").drizzle_bank is None
    assert build_recipe("derain", DerainConfig(**small, drizzle=0.3), device="cpu").drizzle_bank.shape[0] == 4


def test_veil_field_is_smooth_positive_and_seeded():
    f = veil_field(96, 128, torch.Generator().manual_seed(4))
    assert f.shape == (1, 96, 128) and (f >= 0).all()
    assert torch.equal(f, veil_field(96, 128, torch.Generator().manual_seed(4)))
    assert (f[:, 1:] - f[:, :-1]).abs().max() < 0.1  # no edges: it varies over the whole crop
    fields = torch.stack([veil_field(32, 32, torch.Generator().manual_seed(i)) for i in range(200)])
    assert 0.8 < fields.mean() < 1.2 and fields.std() > 0.1  # mean about 1, but not constant


def test_bank_rain_on_crops_larger_than_the_bank():
    bank, _ = make_rain_bank(2, 32, seed=0)
    out = add_bank_rain(torch.zeros(1, 1, 70, 90), bank, torch.Generator().manual_seed(0))
    assert out.shape == (1, 1, 70, 90) and out.max() > 0
