"""Tests for the contrastive samplers (napari_nlcl.contrastive.samplers)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_nlcl.contrastive.samplers import (  # noqa: E402
    NonLocalSample,
    PrototypeSelection,
    cross_domain_negative_mask,
    domain_negative_mask,
    extract_patches,
    image_level_pairs,
    kmeans,
    nonlocal_positives,
    patch_embeddings,
    prototype_negative_mask,
    reverse_nonlocal,
    sample_locations,
    scale_coords,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def manual_dist(img: torch.Tensor, a, p, patch: int) -> float:
    """L2 distance between the patches at top-left a and p of one (C, H, W) image."""
    (ay, ax), (py, px) = a, p
    pa = img[:, ay : ay + patch, ax : ax + patch]
    pb = img[:, py : py + patch, px : px + patch]
    return float((pa - pb).square().sum().sqrt())


def texture_image(size: int = 48, period: int = 4, odd=(24, 40), value: float = 100.0):
    """Periodic random texture with one very different square [odd[0], odd[1])^2."""
    tile = torch.rand(1, period, period, generator=gen(3))
    reps = size // period
    img = tile.repeat(1, reps, reps)
    lo, hi = odd
    img[:, lo:hi, lo:hi] = value
    return img[None]  # (1, 1, size, size)


def test_global_random_state_is_never_used():
    before = torch.random.get_rng_state()
    img = torch.rand(2, 3, 24, 24, generator=gen(0))
    sample_locations(img, 8, generator=gen(1))
    s = nonlocal_positives(img, patch=4, window=12, k=2, num_negatives=4, generator=gen(2))
    reverse_nonlocal(img, patch=4, window=12, k=4, generator=gen(3))
    prototype_negative_mask(patch_embeddings(img, s.coords, 4).reshape(-1, 3),
                            num_clusters=(2, 3), generator=gen(4))
    assert torch.equal(torch.random.get_rng_state(), before)


# --------------------------------------------------------------------------
# sample_locations
# --------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_sample_locations_shapes_and_reuse(device):
    q = torch.randn(3, 5, 8, 10, device=device)
    k = torch.randn(3, 7, 8, 10, device=device)  # another layer, same spatial size
    qp, ids = sample_locations(q, 16, generator=gen(0))
    assert qp.shape == (3, 16, 5) and ids.shape == (16,)
    assert ids.device == q.device and ids.dtype == torch.long
    assert len(set(ids.tolist())) == 16 and 0 <= int(ids.min()) and int(ids.max()) < 80
    kp, ids2 = sample_locations(k, ids=ids)
    assert kp.shape == (3, 16, 7) and torch.equal(ids2, ids)
    ys, xs = ids // 10, ids % 10
    for b in range(3):  # each element gathers from its own map, same positions
        assert torch.equal(qp[b], q[b][:, ys, xs].T)
        assert torch.equal(kp[b], k[b][:, ys, xs].T)


def test_sample_locations_all_when_too_many_or_zero():
    x = torch.randn(2, 3, 4, 5)
    for n in (0, 20, 1000):
        p, ids = sample_locations(x, n, generator=gen(0))
        assert torch.equal(ids, torch.arange(20))
        assert torch.equal(p, x.flatten(2).transpose(1, 2))


def test_sample_locations_seeded():
    x = torch.randn(1, 2, 16, 16)
    a = sample_locations(x, 32, generator=gen(5))[1]
    b = sample_locations(x, 32, generator=gen(5))[1]
    c = sample_locations(x, 32, generator=gen(6))[1]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_locations_gradient():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    p, ids = sample_locations(x, 5, generator=gen(0))
    p.sum().backward()
    assert float(x.grad.sum()) == pytest.approx(2 * 3 * 5)


def test_sample_locations_errors():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        sample_locations(x[0], 4, generator=gen())
    with pytest.raises(TypeError, match="generator="):
        sample_locations(x, 4)
    with pytest.raises(TypeError, match="torch.Generator"):
        sample_locations(x, 4, generator=0)
    with pytest.raises(ValueError, match="num_patches must be >= 0"):
        sample_locations(x, -1, generator=gen())
    with pytest.raises(TypeError, match="num_patches must be an int"):
        sample_locations(x, 2.5, generator=gen())
    with pytest.raises(ValueError, match="another size"):
        sample_locations(x, ids=torch.tensor([0, 16]))
    with pytest.raises(TypeError, match="integer dtype"):
        sample_locations(x, ids=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        sample_locations(x, ids=torch.tensor([[0, 1]]))


# --------------------------------------------------------------------------
# nonlocal_positives / reverse_nonlocal
# --------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_nonlocal_shapes_ranges_and_distances(device):
    img = torch.rand(3, 2, 40, 36, generator=gen(1)).to(device)
    s = nonlocal_positives(img, patch=8, window=24, k=5, num_negatives=20, generator=gen(2))
    assert isinstance(s, NonLocalSample) and s.patch == 8
    assert s.anchor.shape == (3, 2) and s.positives.shape == (3, 5, 2)
    assert s.negatives.shape == (3, 20, 2) and s.distances.shape == (3, 5)
    assert s.negative_distances.shape == (3, 20) and s.coords.shape == (3, 26, 2)
    assert s.anchor.device == img.device and s.positives.dtype == torch.long
    for b in range(3):
        a = s.anchor[b]
        picked = torch.cat([s.positives[b], s.negatives[b]])
        # inside the image, inside the (shifted) window, never the anchor, no duplicates
        assert int(picked[:, 0].max()) <= 40 - 8 and int(picked[:, 1].max()) <= 36 - 8
        assert int(picked.min()) >= 0
        assert int((picked - a).abs().max()) <= 24 - 8
        assert not bool((picked == a).all(-1).any())
        assert len({tuple(p) for p in picked.tolist()}) == 25
        # distances measured on this element's own image, sorted nearest first
        d = torch.cat([s.distances[b], s.negative_distances[b]])
        assert bool((d[1:] >= d[:-1]).all())
        for p, dist in zip(picked.tolist(), d.tolist()):
            assert dist == pytest.approx(manual_dist(img[b].cpu(), a.tolist(), p, 8), abs=1e-4)


def test_nonlocal_batch_elements_use_their_own_image():
    a = torch.rand(1, 3, 32, 32, generator=gen(10))
    b = torch.rand(1, 3, 32, 32, generator=gen(11))
    centers = torch.tensor([[5, 7], [12, 3]])
    both = nonlocal_positives(torch.cat([a, b]), patch=6, window=20, k=4, num_negatives=6,
                              centers=centers)
    alone_a = nonlocal_positives(a, patch=6, window=20, k=4, num_negatives=6,
                                 centers=centers[:1])
    alone_b = nonlocal_positives(b, patch=6, window=20, k=4, num_negatives=6,
                                 centers=centers[1:])
    for i, alone in enumerate((alone_a, alone_b)):
        assert torch.equal(both.positives[i], alone.positives[0])
        assert torch.equal(both.negatives[i], alone.negatives[0])
        assert torch.equal(both.distances[i], alone.distances[0])
    # and element 1 is not ranked on element 0's image
    swapped = nonlocal_positives(torch.cat([b, a]), patch=6, window=20, k=4, num_negatives=6,
                                 centers=centers)
    assert not torch.equal(swapped.distances[1], both.distances[1])


def test_nonlocal_random_anchors_differ_per_element_and_are_seeded():
    img = torch.rand(4, 1, 48, 48, generator=gen(0))
    s1 = nonlocal_positives(img, patch=8, window=24, k=3, num_negatives=3, generator=gen(7))
    s2 = nonlocal_positives(img, patch=8, window=24, k=3, num_negatives=3, generator=gen(7))
    s3 = nonlocal_positives(img, patch=8, window=24, k=3, num_negatives=3, generator=gen(8))
    assert torch.equal(s1.anchor, s2.anchor) and torch.equal(s1.positives, s2.positives)
    assert not torch.equal(s1.anchor, s3.anchor)
    assert len({tuple(a) for a in s1.anchor.tolist()}) > 1
    assert int(s1.anchor.min()) >= 0 and int(s1.anchor.max()) <= 48 - 8


def test_nonlocal_known_answer_on_periodic_texture():
    img = texture_image()  # period 4, odd square [24, 40)^2
    s = nonlocal_positives(img, patch=8, window=32, k=8, num_negatives=16,
                           centers=torch.tensor([[8, 8]]))
    # exact copies of the anchor: distance 0, offsets multiple of the period,
    # outside the odd square
    pos_and_neg = torch.cat([s.positives[0], s.negatives[0]])
    assert torch.equal(s.distances, torch.zeros(1, 8))
    assert torch.equal(s.negative_distances, torch.zeros(1, 16))  # 44 exact copies in the window
    assert bool(((pos_and_neg - 8) % 4 == 0).all())
    overlaps_odd = (pos_and_neg[:, 0] + 8 > 24) & (pos_and_neg[:, 1] + 8 > 24)
    assert not bool(overlaps_odd.any())
    # reverse: the least similar patches lie on the odd square, most overlap first
    r = reverse_nonlocal(img, patch=8, window=32, k=3, centers=s.anchor)
    assert r.negatives[0, 0].tolist() == [24, 24]
    assert {tuple(p) for p in r.negatives[0, 1:].tolist()} == {(23, 24), (24, 23)}
    d = r.negative_distances[0]
    assert bool((d[1:] <= d[:-1]).all()) and float(d[-1]) > 0
    assert r.positives.shape == (1, 0, 2) and r.distances.shape == (1, 0)


def test_nonlocal_window_shifted_at_the_border():
    img = torch.rand(2, 1, 30, 30, generator=gen(4))
    s = nonlocal_positives(img, patch=6, window=16, k=2, num_negatives=100,
                           centers=torch.tensor([[0, 0], [24, 24]]))
    # the window is shifted inside the image, not shrunk: 11 x 11 candidates each
    assert s.negatives.shape == (2, 100, 2)
    assert int(s.negatives[0].max()) <= 10
    assert int(s.negatives[1].min()) >= 14


def test_nonlocal_stride_grid():
    img = torch.rand(1, 1, 32, 32, generator=gen(4))
    s = nonlocal_positives(img, patch=8, window=24, k=3, num_negatives=5, stride=4,
                           centers=torch.tensor([[12, 12]]))
    # window origin 12 + 4 - 12 = 4: grid 4, 8, ..., 20
    picked = torch.cat([s.positives, s.negatives], 1)
    assert bool(((picked - 4) % 4 == 0).all())


def test_nonlocal_errors():
    img = torch.rand(1, 1, 20, 20)
    with pytest.raises(ValueError, match=r"use window >= \d+"):
        nonlocal_positives(img, patch=8, window=10, k=8, num_negatives=8, generator=gen())
    with pytest.raises(ValueError, match="image is too small"):
        nonlocal_positives(img, patch=8, window=20, k=8, num_negatives=500, generator=gen())
    with pytest.raises(ValueError, match="smaller than one"):
        nonlocal_positives(img, patch=32, window=40, generator=gen())
    with pytest.raises(ValueError, match="window .* must be >= patch"):
        nonlocal_positives(img, patch=8, window=4, generator=gen())
    with pytest.raises(TypeError, match="floating point"):
        nonlocal_positives(img.long(), patch=4, window=8, k=1, num_negatives=0, generator=gen())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        nonlocal_positives(img[0], patch=4, window=8, k=1, num_negatives=0, generator=gen())
    with pytest.raises(TypeError, match="centers="):
        nonlocal_positives(img, patch=4, window=8, k=1, num_negatives=0)
    with pytest.raises(ValueError, match=r"centers must have shape \(B, 2\)"):
        nonlocal_positives(img, patch=4, window=8, k=1, num_negatives=0,
                           centers=torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer dtype"):
        nonlocal_positives(img, patch=4, window=8, k=1, num_negatives=0,
                           centers=torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="centers out of range"):
        nonlocal_positives(img, patch=4, window=8, k=1, num_negatives=0,
                           centers=torch.tensor([[17, 0]]))
    with pytest.raises(ValueError, match="k must be >= 1"):
        nonlocal_positives(img, patch=4, window=8, k=0, generator=gen())
    with pytest.raises(ValueError, match="k must be >= 1"):
        reverse_nonlocal(img, patch=4, window=8, k=0, generator=gen())
    with pytest.raises(ValueError, match="window"):
        reverse_nonlocal(img, patch=4, window=8, k=25, generator=gen())


# --------------------------------------------------------------------------
# extract_patches / patch_embeddings / scale_coords
# --------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_extract_patches_matches_slicing(device):
    x = torch.randn(2, 3, 9, 11, device=device)
    coords = torch.tensor([[[0, 0], [4, 7], [6, 8]], [[1, 2], [0, 8], [6, 0]]])
    p = extract_patches(x, coords, 3)
    assert p.shape == (2, 3, 3, 3, 3) and p.device == x.device
    for b in range(2):
        for m, (y, xx) in enumerate(coords[b].tolist()):
            assert torch.equal(p[b, m], x[b, :, y : y + 3, xx : xx + 3])
    e = patch_embeddings(x, coords, 3)
    assert e.shape == (2, 3, 3)
    assert torch.allclose(e, p.mean((-2, -1)))
    assert torch.equal(patch_embeddings(x, coords, 1), x[torch.arange(2)[:, None], :,
                                                          coords[..., 0], coords[..., 1]])
    assert extract_patches(x, coords[:, :0], 3).shape == (2, 0, 3, 3, 3)


def test_patch_embeddings_gradcheck():
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    coords = torch.tensor([[[0, 0], [2, 3], [1, 1]], [[3, 3], [0, 2], [3, 0]]])
    assert torch.autograd.gradcheck(lambda t: patch_embeddings(t, coords, 2), (x,))


def test_nonlocal_coords_feed_embeddings_on_other_layer():
    """NLCL: coordinates chosen on one layer (B) read the other layer (R)."""
    bg = torch.rand(2, 3, 32, 32, generator=gen(0))
    rain = torch.rand(2, 3, 32, 32, generator=gen(1), requires_grad=True)
    s = nonlocal_positives(bg, patch=8, window=24, k=4, num_negatives=8, generator=gen(2))
    emb = patch_embeddings(rain, s.coords, s.patch)
    assert emb.shape == (2, 13, 3)
    emb.sum().backward()
    assert rain.grad is not None and float(rain.grad.abs().sum()) > 0
    # features at half resolution
    feats = torch.rand(2, 5, 16, 16)
    small = scale_coords(s.coords, (32, 32), (16, 16), patch=4)
    assert patch_embeddings(feats, small, 4).shape == (2, 13, 5)


def test_scale_coords():
    c = torch.tensor([[[0, 0], [31, 17], [63, 63]]])
    assert scale_coords(c, (64, 64), (16, 16)).tolist() == [[[0, 0], [7, 4], [15, 15]]]
    assert scale_coords(c, (64, 64), (16, 16), patch=4).tolist() == [[[0, 0], [7, 4], [12, 12]]]
    assert scale_coords(c, (64, 32), (32, 64)).tolist() == [[[0, 0], [15, 34], [31, 126]]]
    with pytest.raises(ValueError, match="last axis of size 2"):
        scale_coords(torch.zeros(1, 3, dtype=torch.long), (4, 4), (2, 2))
    with pytest.raises(TypeError, match=r"\(height, width\) pair"):
        scale_coords(c, 64, (16, 16))
    with pytest.raises(ValueError, match="does not fit"):
        scale_coords(c, (64, 64), (16, 16), patch=17)


def test_extract_patches_errors():
    x = torch.randn(2, 3, 8, 8)
    good = torch.zeros(2, 1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(B, M, 2\) = \(2, M, 2\)"):
        extract_patches(x, torch.zeros(1, 1, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="for one patch per element"):
        extract_patches(x, torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="integer dtype"):
        extract_patches(x, good.float(), 2)
    with pytest.raises(ValueError, match="scale_coords"):
        extract_patches(x, torch.full((2, 1, 2), 7), 2)
    with pytest.raises(ValueError, match="larger than the 8x8 map"):
        extract_patches(x, good, 9)
    with pytest.raises(TypeError, match="floating point"):
        patch_embeddings(x.long(), good, 2)


# --------------------------------------------------------------------------
# image_level_pairs
# --------------------------------------------------------------------------


def test_image_level_pairs_batch_negatives():
    b = 3
    out = torch.randn(b, 4, 2, 2)
    clear = torch.randn(b, 4, 2, 2)
    hazy = torch.randn(b, 4, 2, 2)
    pos, neg = image_level_pairs(out, clear, hazy)
    assert pos is clear and neg.shape == (b, b, 4, 2, 2)
    for i in range(b):
        assert torch.equal(neg[i, 0], hazy[i])  # own hazy input first
        others = [j for j in range(b) if j != i]
        for slot, j in enumerate(others, start=1):
            assert torch.equal(neg[i, slot], hazy[j])
    # several negatives per element: K' = K * B, own K first
    many = torch.randn(b, 2, 4, 2, 2)
    _, neg2 = image_level_pairs(out, clear, many)
    assert neg2.shape == (b, 2 * b, 4, 2, 2)
    assert torch.equal(neg2[1, :2], many[1])
    assert torch.equal(neg2[1, 2:4], many[0]) and torch.equal(neg2[1, 4:], many[2])
    # without batch negatives: just (B, K, ...)
    _, neg3 = image_level_pairs(out, clear, hazy, batch_negatives=False)
    assert torch.equal(neg3, hazy[:, None])
    _, neg4 = image_level_pairs(out[:1], clear[:1], hazy[:1])
    assert torch.equal(neg4, hazy[:1, None])


def test_image_level_pairs_gradient_and_errors():
    out = torch.randn(2, 5)
    hazy = torch.randn(2, 5, requires_grad=True)
    _, neg = image_level_pairs(out, out, hazy)
    neg.sum().backward()
    assert torch.equal(hazy.grad, torch.full((2, 5), 2.0))  # each used once per element
    with pytest.raises(ValueError, match="positive must have the anchor's shape"):
        image_level_pairs(out, torch.randn(2, 4), hazy)
    with pytest.raises(ValueError, match=r"\(B, K, \.\.\.\) = \(2, K, 5\)"):
        image_level_pairs(out, out, torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match="negatives must be a torch.Tensor"):
        image_level_pairs(out, out, [hazy])


# --------------------------------------------------------------------------
# domain masks (DCoDR)
# --------------------------------------------------------------------------


def test_domain_masks_hand_made():
    d = torch.tensor([0, 0, 1, 1, 1, 2])
    m = domain_negative_mask(d)
    expected = torch.tensor([
        [0, 1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 1, 0, 1, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ], dtype=torch.bool)
    assert m.dtype == torch.bool and torch.equal(m, expected)
    c = cross_domain_negative_mask(d)
    same = d[:, None] == d[None, :]
    assert torch.equal(c, ~same)
    assert not bool((m & c).any())
    # positives (other views) are never negatives
    pos = torch.tensor([1, 0, 3, 2, 2, 0])
    mp = domain_negative_mask(d, positive_index=pos)
    assert not bool(mp[torch.arange(6), pos].any())
    assert torch.equal(mp, expected & ~torch.nn.functional.one_hot(pos, 6).bool())
    assert not bool(cross_domain_negative_mask(d, positive_index=pos)[5, 0])


def test_domain_mask_errors():
    with pytest.raises(TypeError, match="integer or bool dtype"):
        domain_negative_mask(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        domain_negative_mask(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="1-D integer torch.Tensor"):
        cross_domain_negative_mask([0, 1])
    with pytest.raises(ValueError, match="must differ from anchor"):
        domain_negative_mask(torch.tensor([0, 0]), positive_index=torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"positive_index must have shape \(2,\)"):
        domain_negative_mask(torch.tensor([0, 0]), positive_index=torch.tensor([1]))


# --------------------------------------------------------------------------
# kmeans and prototype selection (HCSC)
# --------------------------------------------------------------------------


def clustered_embeddings(noise: float = 1e-3) -> torch.Tensor:
    """3 coarse groups (orthogonal directions), each made of 2 sub-groups of 2
    near-duplicates: rows 4g + {0, 1} and 4g + {2, 3}."""
    dirs = torch.eye(3, 8)
    sub = torch.zeros(2, 8)
    sub[0, 3 + 0], sub[1, 3 + 1] = 0.3, -0.3
    rows = []
    for g in range(3):
        for s in range(2):
            for _ in range(2):
                rows.append(dirs[g] + sub[s])
    x = torch.stack(rows)
    return x + noise * torch.randn(x.shape, generator=gen(9))


def same_partition(labels: torch.Tensor, groups) -> bool:
    for grp in groups:
        if len({int(labels[i]) for i in grp}) != 1:
            return False
    reps = {int(labels[grp[0]]) for grp in groups}
    return len(reps) == len(groups)


COARSE = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
FINE = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_recovers_groups(seed):
    x = clustered_embeddings()
    r3 = kmeans(x, 3, generator=gen(seed))
    r6 = kmeans(x, 6, generator=gen(seed))
    assert r3.labels.shape == (12,) and r3.centroids.shape == (3, 8)
    assert torch.allclose(r3.centroids.norm(dim=1), torch.ones(3))
    assert same_partition(r3.labels, COARSE) and same_partition(r6.labels, FINE)


def test_kmeans_seeded_and_clamped():
    x = torch.randn(20, 4, generator=gen(0))
    a = kmeans(x, 5, generator=gen(1)).labels
    assert torch.equal(a, kmeans(x, 5, generator=gen(1)).labels)
    assert any(not torch.equal(a, kmeans(x, 5, generator=gen(s)).labels) for s in range(2, 6))
    small = torch.randn(3, 4, generator=gen(0))
    r = kmeans(small, 10, generator=gen(0))
    assert r.centroids.shape == (3, 4) and sorted(r.labels.tolist()) == [0, 1, 2]
    dup = torch.ones(4, 2)  # all rows identical: still k distinct initial picks, no crash
    assert kmeans(dup, 3, generator=gen(0)).centroids.shape == (3, 2)
    with pytest.raises(TypeError, match="generator"):
        kmeans(x, 2, generator=None)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        kmeans(x[0], 2, generator=gen())
    with pytest.raises(ValueError, match="k must be >= 1"):
        kmeans(x, 0, generator=gen())


def test_prototype_selection_drops_near_duplicates_never_the_positive():
    x = clustered_embeddings()
    n = 12
    eye = torch.eye(n, dtype=torch.bool)
    sel = prototype_negative_mask(x, num_clusters=(3, 6), generator=gen(0))
    assert isinstance(sel, PrototypeSelection) and sel.num_clusters == (3, 6)
    assert sel.negative_mask.shape == (n, n) and sel.assignments.shape == (2, n)
    assert not bool((sel.negative_mask & eye).any())
    # rule "all": only the near-duplicate partner (same fine and coarse cluster) is dropped
    assert sel.negative_mask[0].tolist() == [False, False] + [True] * 10
    assert int(sel.negative_mask.sum()) == n * (n - 2)
    # rule "any": the anchor's whole coarse group is dropped
    sel_any = prototype_negative_mask(x, num_clusters=(3, 6), generator=gen(0), rule="any")
    assert sel_any.negative_mask[5].tolist() == [True] * 4 + [False] * 4 + [True] * 4
    # the positive is never dropped: it stays a positive and is never a negative,
    # whether it is a near-duplicate (0 -> 1) or lies in another group (4 -> 9)
    pos = torch.tensor([1, 0, 3, 2, 9, 4, 7, 6, 4, 8, 11, 10])
    sel_pos = prototype_negative_mask(x, num_clusters=(3, 6), generator=gen(0),
                                      positive_index=pos, rule="any")
    rows = torch.arange(n)
    assert bool(sel_pos.positive_mask[rows, pos].all())
    assert not bool(sel_pos.negative_mask[rows, pos].any())
    assert not bool((sel_pos.negative_mask & sel_pos.positive_mask).any())
    assert not bool((sel_pos.positive_mask & eye).any())


def test_prototype_selection_enrich_anchors_and_seed():
    x = clustered_embeddings()
    anchors = torch.tensor([0, 6])
    sel = prototype_negative_mask(x, num_clusters=(3, 6), generator=gen(0), anchors=anchors,
                                  enrich_positives=True)
    assert sel.negative_mask.shape == (2, 12) and torch.equal(sel.anchors, anchors)
    assert torch.nonzero(sel.positive_mask[0]).flatten().tolist() == [1]
    assert torch.nonzero(sel.positive_mask[1]).flatten().tolist() == [7]
    assert not bool(sel.negative_mask[0, :2].any()) and not bool(sel.negative_mask[1, 6:8].any())
    # no enrichment and no positive_index: no positives
    plain = prototype_negative_mask(x, num_clusters=4, generator=gen(0))
    assert not bool(plain.positive_mask.any()) and plain.num_clusters == (4,)
    # seeded
    rnd = torch.randn(30, 5, generator=gen(0))
    a = prototype_negative_mask(rnd, num_clusters=(2, 5), generator=gen(3))
    b = prototype_negative_mask(rnd, num_clusters=(2, 5), generator=gen(3))
    assert torch.equal(a.assignments, b.assignments)
    assert torch.equal(a.negative_mask, b.negative_mask)
    # clusters clamped to N: every row its own cluster -> nothing but self dropped
    tiny = prototype_negative_mask(rnd[:4], num_clusters=(8,), generator=gen(0))
    assert tiny.num_clusters == (4,)
    assert torch.equal(tiny.negative_mask, ~torch.eye(4, dtype=torch.bool))


def test_prototype_selection_errors():
    x = torch.randn(6, 3)
    with pytest.raises(ValueError, match="rule must be 'all'"):
        prototype_negative_mask(x, generator=gen(), rule="some")
    with pytest.raises(ValueError, match="non-empty sequence"):
        prototype_negative_mask(x, num_clusters=(), generator=gen())
    with pytest.raises(ValueError, match=r"num_clusters\[i\] must be >= 1"):
        prototype_negative_mask(x, num_clusters=(0, 2), generator=gen())
    with pytest.raises(TypeError, match="floating point"):
        prototype_negative_mask(x.long(), generator=gen())
    with pytest.raises(ValueError, match=r"anchors must lie in \[0, 6\)"):
        prototype_negative_mask(x, generator=gen(), anchors=torch.tensor([6]))
    with pytest.raises(ValueError, match="must differ from anchor"):
        prototype_negative_mask(x, generator=gen(), anchors=torch.tensor([2]),
                                positive_index=torch.tensor([2]))
    with pytest.raises(TypeError, match="torch.Generator"):
        prototype_negative_mask(x, generator=1)
