"""Tests of napari_nlcl.contrastive.losses: values, properties, gradients, shapes."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from napari_nlcl.contrastive.losses import (  # noqa: E402
    AECR_WEIGHTS,
    AsymmetricLayerContrast,
    ContrastiveRegularization,
    InfoNCELoss,
    LSGANLoss,
    PatchNCELoss,
    SupConLoss,
    asymmetric_layer_contrast,
    contrastive_regularization,
    cr_warmup_weight,
    info_nce,
    lsgan_loss,
    patch_nce,
    supervised_contrastive,
)


def randn(*shape, seed=0, dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)


# --------------------------------------------------------------------------- references
def ref_patch_nce_cut(feat_q, feat_k, tau, batch_mode):
    """CUT's PatchNCELoss, transcribed (concat [l_pos, l_neg], diagonal filled with -10)."""
    b, n, d = feat_q.shape
    q = F.normalize(feat_q, dim=-1).reshape(b * n, d)
    k = F.normalize(feat_k, dim=-1).reshape(b * n, d).detach()
    l_pos = (q * k).sum(-1, keepdim=True)
    g = 1 if batch_mode else b
    qg, kg = q.reshape(g, -1, d), k.reshape(g, -1, d)
    m = qg.shape[1]
    l_neg = torch.bmm(qg, kg.transpose(2, 1))
    l_neg = l_neg.masked_fill(torch.eye(m, dtype=torch.bool)[None], -10.0).reshape(-1, m)
    out = torch.cat([l_pos, l_neg], 1) / tau
    return F.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long))


def ref_supcon(features, labels, tau, base):
    """Loop over anchors; mean over anchors that have a positive."""
    z = F.normalize(features.reshape(-1, features.shape[-1]), dim=-1)
    v = 1 if features.ndim == 2 else features.shape[1]
    lab = [int(x) for x in labels for _ in range(v)]
    losses = []
    for i in range(len(lab)):
        others = [a for a in range(len(lab)) if a != i]
        pos = [p for p in others if lab[p] == lab[i]]
        if not pos:
            continue
        denom = torch.logsumexp(torch.stack([z[i] @ z[a] / tau for a in others]), 0)
        lp = torch.stack([z[i] @ z[p] / tau - denom for p in pos])
        losses.append(-(tau / base) * lp.mean())
    return torch.stack(losses).mean()


def ref_asym(b_emb, r_emb, k_bg, k_rain, tau_bg, tau_rain, w_b, w_r):
    def term(anchor, pos, neg, tau):
        sims = [anchor @ p / tau for p in pos] + [anchor @ c / tau for c in neg]
        denom = torch.logsumexp(torch.stack(sims), 0)
        return -torch.stack([anchor @ p / tau - denom for p in pos]).mean()

    out = []
    for b, r in zip(F.normalize(b_emb, dim=-1), F.normalize(r_emb, dim=-1)):
        out.append(w_b * term(b[0], b[1:1 + k_bg], r, tau_bg)
                   + w_r * term(r[0], r[1:1 + k_rain], b, tau_rain))
    return torch.stack(out).mean()


# --------------------------------------------------------------------------- info_nce
def test_info_nce_known_value_orthogonal_negative():
    q = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    neg = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=torch.float64)
    for tau in (0.07, 0.5, 1.0):
        loss = info_nce(q, q.clone(), neg, temperature=tau)
        expected = math.log(1 + math.exp((0 - 1) / tau))
        assert loss.shape == ()
        assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_info_nce_normalizes_and_batch_negatives_is_nxn_cross_entropy():
    q, p = randn(5, 8, seed=1), randn(5, 8, seed=2)
    loss = info_nce(q, p, temperature=0.2)
    qn, pn = F.normalize(q, dim=1), F.normalize(p, dim=1)
    expected = F.cross_entropy(qn @ pn.T / 0.2, torch.arange(5))
    assert torch.allclose(loss, expected, atol=1e-6)
    # scale invariance from the internal L2 normalisation
    assert torch.allclose(info_nce(3 * q, 0.5 * p, temperature=0.2), loss, atol=1e-6)
    per = info_nce(q, p, temperature=0.2, reduction="none")
    assert per.shape == (5,)
    assert torch.allclose(per.sum(), info_nce(q, p, temperature=0.2, reduction="sum"))


def test_info_nce_explicit_negatives_matches_manual():
    q, p, n = randn(4, 6, seed=3), randn(4, 6, seed=4), randn(4, 3, 6, seed=5)
    qn, pn, nn_ = F.normalize(q, dim=-1), F.normalize(p, dim=-1), F.normalize(n, dim=-1)
    logits = torch.cat([(qn * pn).sum(-1, keepdim=True), torch.einsum("nd,nkd->nk", qn, nn_)], 1)
    expected = F.cross_entropy(logits / 0.1, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(info_nce(q, p, n, temperature=0.1), expected, atol=1e-6)
    assert torch.allclose(InfoNCELoss(0.1)(q, p, n), expected, atol=1e-6)


def test_info_nce_bad_shapes():
    q = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"query must have shape \(N, D\)"):
        info_nce(q[0], q[0])
    with pytest.raises(ValueError, match="positive must have the shape"):
        info_nce(q, q[:3])
    with pytest.raises(ValueError, match=r"negatives must have shape \(N, K, D\)"):
        info_nce(q, q, torch.randn(4, 3, 5))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, q, temperature=0)
    with pytest.raises(ValueError, match="reduction"):
        info_nce(q, q, reduction="avg")


# --------------------------------------------------------------------------- patch_nce
@pytest.mark.parametrize("mode", ["image", "batch"])
def test_patch_nce_matches_cut_reference(mode):
    q, k = randn(2, 6, 8, seed=6), randn(2, 6, 8, seed=7)
    loss = patch_nce(q, k, temperature=0.07, negatives=mode)
    ref = ref_patch_nce_cut(q, k, 0.07, mode == "batch")
    assert loss.shape == ()
    assert torch.allclose(loss, ref, atol=1e-5)
    assert torch.allclose(PatchNCELoss(0.07, negatives=mode)(q, k), loss)


def test_patch_nce_minimal_for_identical_orthogonal_keys():
    k = torch.eye(5).expand(3, 5, 5).contiguous()
    loss = patch_nce(k, k.clone(), temperature=0.01)
    assert 0 <= loss.item() < 1e-6
    tau = 0.5  # exact value log(1 + (N - 1) exp(-1 / tau))
    assert patch_nce(k, k, temperature=tau).item() == pytest.approx(
        math.log(1 + 4 * math.exp(-1 / tau)), rel=1e-5)
    # any perturbation of the queries raises the loss
    moved = patch_nce(k + 0.3 * randn(3, 5, 5, seed=8), k, temperature=tau)
    assert moved > patch_nce(k, k, temperature=tau)


def test_patch_nce_batch_mode_b1_equals_image_and_adds_negatives():
    q, k = randn(1, 7, 4, seed=9), randn(1, 7, 4, seed=10)
    assert torch.allclose(patch_nce(q, k, negatives="batch"), patch_nce(q, k, negatives="image"))
    q, k = randn(3, 7, 4, seed=11), randn(3, 7, 4, seed=12)
    img = patch_nce(q, k, negatives="image", reduction="none")
    bat = patch_nce(q, k, negatives="batch", reduction="none")
    assert img.shape == bat.shape == (3, 7)
    assert torch.all(bat >= img - 1e-6)  # a superset of negatives never lowers the loss


def test_patch_nce_detaches_keys_by_default():
    q = randn(2, 4, 3, seed=13, requires_grad=True)
    k = randn(2, 4, 3, seed=14, requires_grad=True)
    patch_nce(q, k).backward()
    assert q.grad is not None and k.grad is None
    patch_nce(q, k, detach_keys=False).backward()
    assert k.grad is not None and torch.isfinite(k.grad).all()


def test_patch_nce_bad_shapes():
    with pytest.raises(ValueError, match=r"feat_q must have shape \(B, N, D\)"):
        patch_nce(torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="feat_k must have the shape of feat_q"):
        patch_nce(torch.randn(2, 4, 3), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="'image' or 'batch'"):
        patch_nce(torch.randn(2, 4, 3), torch.randn(2, 4, 3), negatives="all")


# --------------------------------------------------------------------------- SupCon
def test_supcon_matches_reference_and_views():
    feats, labels = randn(6, 5, seed=15), torch.tensor([0, 1, 0, 1, 1, 0])
    loss = supervised_contrastive(feats, labels, temperature=0.1)
    assert loss.shape == ()
    assert torch.allclose(loss, ref_supcon(feats, labels, 0.1, 0.1), atol=1e-5)
    views = randn(3, 2, 5, seed=16)
    lab = torch.tensor([2, 7, 2])
    assert torch.allclose(supervised_contrastive(views, lab, temperature=0.2),
                          ref_supcon(views, lab, 0.2, 0.2), atol=1e-5)
    assert supervised_contrastive(views, lab, reduction="none").shape == (3, 2)
    # labels=None: SimCLR, the other view of the same sample is the positive
    assert torch.allclose(supervised_contrastive(views, temperature=0.2),
                          ref_supcon(views, torch.arange(3), 0.2, 0.2), atol=1e-5)
    # base temperature scales the loss by tau / tau_b
    scaled = supervised_contrastive(feats, labels, temperature=0.1, base_temperature=0.2)
    assert torch.allclose(scaled, loss * 0.5, atol=1e-6)
    mod = SupConLoss(0.1)
    assert torch.allclose(mod(feats, labels), loss)


def test_supcon_anchors_without_positive_are_skipped():
    feats = randn(3, 4, seed=17, requires_grad=True)
    # all labels distinct, one view: no anchor has a positive -> 0, finite zero gradient
    loss = supervised_contrastive(feats, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(feats.grad == 0)
    # anchor 2 is alone in its class: mean over anchors 0 and 1 only
    feats.grad = None
    labels = torch.tensor([1, 1, 0])
    loss = supervised_contrastive(feats, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(feats.grad).all()
    assert torch.allclose(loss, ref_supcon(feats.detach(), labels, 0.07, 0.07), atol=1e-5)
    per = supervised_contrastive(feats, labels, reduction="none")
    assert per[2].item() == 0.0 and torch.allclose(per[:2].mean(), loss)
    # a single sample
    assert supervised_contrastive(torch.randn(1, 4), torch.tensor([0])).item() == 0.0


def test_supcon_layer_contrast_minimal_when_layers_separate():
    b = torch.tensor([[1.0, 0.0]]).repeat(4, 1)
    r = torch.tensor([[0.0, 1.0]]).repeat(4, 1)
    loss = supervised_contrastive(torch.cat([b, r]), torch.tensor([1] * 4 + [0] * 4),
                                  temperature=0.01)
    # each anchor: 3 positives at similarity 1, 4 negatives at 0 -> log(3 + 4 e^-100) - log(1)
    assert loss.item() == pytest.approx(math.log(3), rel=1e-5)


def test_supcon_bad_inputs():
    with pytest.raises(ValueError, match=r"\(N, D\) or \(N, V, D\)"):
        supervised_contrastive(torch.randn(2, 2, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\)"):
        supervised_contrastive(torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="labels must be integers"):
        supervised_contrastive(torch.randn(2, 4), torch.tensor([0.0, 1.0]))


# --------------------------------------------------------------------------- asymmetric
def test_asymmetric_reduces_to_symmetric_supcon():
    b_emb, r_emb = randn(3, 5, 6, seed=18), randn(3, 4, 6, seed=19)  # P = 4, P' = 3
    loss = asymmetric_layer_contrast(b_emb, r_emb, k_bg=4, k_rain=3, tau_bg=0.1, tau_rain=0.1,
                                     reduction="none")
    for i in range(3):
        x = torch.cat([b_emb[i], r_emb[i]])
        labels = torch.tensor([1] * 5 + [0] * 4)  # B = 1, R = 0
        per = supervised_contrastive(x, labels, temperature=0.1, reduction="none")
        assert torch.allclose(loss[i], per[0] + per[5], atol=1e-5)


def test_asymmetric_matches_reference_and_module():
    b_emb, r_emb = randn(2, 10, 8, seed=20), randn(2, 7, 8, seed=21)
    kw = dict(k_bg=8, k_rain=4, tau_bg=0.07, tau_rain=0.05, weight_bg=1.0, weight_rain=0.5)
    loss = asymmetric_layer_contrast(b_emb, r_emb, **kw)
    ref = ref_asym(b_emb, r_emb, 8, 4, 0.07, 0.05, 1.0, 0.5)
    assert loss.shape == () and torch.allclose(loss, ref, atol=1e-5)
    assert torch.allclose(AsymmetricLayerContrast(**kw)(b_emb, r_emb), loss)


def _equal_similarity_config(p_b=3, p_r=3, c=0.4, dtype=torch.float64):
    """Rain anchor e0; every other embedding c*e0 + s*e_j with its own e_j: all sims to r0 = c."""
    dim = 1 + (1 + p_b) + p_r
    eye = torch.eye(dim, dtype=dtype)
    s = math.sqrt(1 - c * c)
    others = c * eye[0] + s * eye[1:]
    b_emb = others[: 1 + p_b].unsqueeze(0)
    r_emb = torch.cat([eye[:1], others[1 + p_b:]]).unsqueeze(0)
    return b_emb, r_emb


def test_lower_rain_temperature_pulls_rain_positives_harder():
    grads = {}
    for tau in (0.07, 0.05):
        b_emb, r_emb = _equal_similarity_config()
        r_emb.requires_grad_(True)
        loss = asymmetric_layer_contrast(b_emb, r_emb, k_bg=2, k_rain=2, tau_rain=tau,
                                         weight_bg=0.0)
        loss.backward()
        grads[tau] = r_emb.grad[0, 1:3].norm()
        # positives beyond k_rain take no part in the rain anchor's term
        assert torch.all(r_emb.grad[0, 3:] == 0)
    # at equal similarities the softmax is uniform and the pull scales exactly as 1 / tau
    assert grads[0.05] / grads[0.07] == pytest.approx(0.07 / 0.05, rel=1e-9)


def test_asymmetric_bad_inputs():
    b, r = torch.randn(2, 5, 4), torch.randn(2, 4, 4)
    with pytest.raises(ValueError, match=r"b_emb must have shape \(B, 1 \+ P, D\)"):
        asymmetric_layer_contrast(b[:, :1], r, k_bg=1, k_rain=1)
    with pytest.raises(ValueError, match=r"r_emb must have shape \(B, 1 \+ P', D\)"):
        asymmetric_layer_contrast(b, torch.randn(2, 4, 3), k_bg=1, k_rain=1)
    with pytest.raises(ValueError, match=r"k_bg must be an integer in \[1, 4\]"):
        asymmetric_layer_contrast(b, r, k_bg=8, k_rain=2)
    with pytest.raises(ValueError, match=r"k_rain must be an integer in \[1, 3\]"):
        asymmetric_layer_contrast(b, r, k_bg=4, k_rain=0)


# --------------------------------------------------------------------------- CR
def test_cr_hand_computation():
    out = [torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 1, 1)]
    pos = [torch.full((1, 1, 2, 2), 0.5), torch.full((1, 2, 1, 1), 1.5)]
    neg = [torch.full((1, 1, 2, 2), 2.0), torch.zeros(1, 2, 1, 1)]
    loss = contrastive_regularization(out, pos, neg, weights=(0.5, 1.0), eps=0.0)
    assert loss.item() == pytest.approx(0.5 * 0.5 / 2.0 + 1.0 * 0.5 / 1.0)
    l2 = contrastive_regularization(out, pos, neg, weights=(0.5, 1.0), eps=0.0, distance="l2")
    assert l2.item() == pytest.approx(0.5 * 0.25 / 4.0 + 1.0 * 0.25 / 1.0)
    # K negatives: the denominator is their mean distance, in all three layouts
    negs = [torch.zeros(1, 2, 1, 1), torch.full((1, 2, 1, 1), 4.0)]  # distances 1 and 3
    expected = 0.5 / (2.0 + 1e-7)
    for layer_neg in (negs, torch.stack(negs, 1)):
        got = contrastive_regularization(out[1:], pos[1:], [layer_neg], weights=(1.0,))
        assert got.item() == pytest.approx(expected)
    assert torch.allclose(ContrastiveRegularization(weights=(0.5, 1.0), eps=0.0)(out, pos, neg),
                          loss)


class TinyEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        f1 = torch.relu(self.c1(x))
        return [f1, torch.relu(self.c2(f1))]


def test_cr_module_with_frozen_encoder():
    enc = TinyEncoder()
    cr = ContrastiveRegularization(enc, weights=(0.5, 1.0))
    cr.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    clear, hazy = randn(2, 3, 8, 8, seed=22), randn(2, 3, 8, 8, seed=23)
    values = [cr(hazy + t * (clear - hazy), clear, hazy).item() for t in (0.2, 0.5, 0.8, 1.0)]
    assert values == sorted(values, reverse=True) and values[-1] < 1e-6
    out = (hazy + 0.3 * (clear - hazy)).requires_grad_(True)
    loss = cr(out, clear, hazy)
    loss.backward()
    assert out.grad is not None and all(p.grad is None for p in enc.parameters())
    expected = contrastive_regularization(enc(out), enc(clear), enc(hazy), weights=(0.5, 1.0))
    assert torch.allclose(loss, expected)
    hazy2 = randn(2, 3, 8, 8, seed=24)
    stacked = cr(out, clear, torch.stack([hazy, hazy2], 1))
    assert torch.allclose(stacked, cr(out, clear, [hazy, hazy2]), atol=1e-6)
    with pytest.raises(ValueError, match="weights must have one entry per layer"):
        ContrastiveRegularization(enc)(out, clear, hazy)  # 5 AECR weights, 2 layers


def test_cr_detaches_targets_and_normalize_is_bounded():
    out = randn(1, 2, 3, 3, seed=25, requires_grad=True)
    pos = randn(1, 2, 3, 3, seed=26, requires_grad=True)
    contrastive_regularization([out], [pos], [out.detach().clone()], weights=(1.0,)).backward()
    assert pos.grad is None and out.grad is not None
    # out == negative: the raw ratio explodes, the normalised one stays <= 1
    raw = contrastive_regularization([out], [pos], [out.detach()], weights=(1.0,))
    norm = contrastive_regularization([out], [pos], [out.detach()], weights=(1.0,), normalize=True)
    assert raw.item() > 1e5 and 0.99 < norm.item() <= 1.0
    norm_pos = contrastive_regularization([out, out], [out, out], [pos, pos],
                                          weights=(0.5, 1.0), normalize=True)
    assert norm_pos.item() == 0.0


def test_cr_bad_inputs_and_warmup():
    f = [torch.randn(1, 2, 4, 4)] * 2
    with pytest.raises(ValueError, match="one entry per layer"):
        contrastive_regularization(f, f, f)  # default weights have 5 entries
    with pytest.raises(ValueError, match="one entry per layer"):
        contrastive_regularization(f, f[:1], f, weights=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"pos_feats\[0\] must have the shape"):
        contrastive_regularization(f[:1], [torch.randn(1, 2, 2, 2)], f[:1], weights=(1.0,))
    with pytest.raises(ValueError, match=r"neg_feats\[0\] must have the shape"):
        contrastive_regularization(f[:1], f[:1], [torch.randn(2, 2, 4, 4)], weights=(1.0,))
    with pytest.raises(TypeError, match="list of feature maps"):
        contrastive_regularization(f[0], f[0], f[0], weights=(1.0,))
    with pytest.raises(ValueError, match="distance"):
        contrastive_regularization(f, f, f, weights=(1.0, 1.0), distance="cos")
    assert len(AECR_WEIGHTS) == 5
    assert cr_warmup_weight(0, 100, 0.1) == 0.0
    assert cr_warmup_weight(50, 100, 0.1) == pytest.approx(0.05)
    assert cr_warmup_weight(500, 100, 0.1) == pytest.approx(0.1)
    assert cr_warmup_weight(3, 0, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        cr_warmup_weight(1, -5, 0.1)


# --------------------------------------------------------------------------- LSGAN
def test_lsgan_loss():
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert lsgan_loss(ones, True).item() == 0.0
    assert lsgan_loss(zeros, True).item() == 1.0
    assert lsgan_loss(ones, False).item() == 1.0
    assert lsgan_loss([ones, zeros], True).item() == pytest.approx(0.5)
    assert torch.equal(LSGANLoss()(zeros, False), lsgan_loss(zeros, False))
    with pytest.raises(TypeError, match="bool"):
        lsgan_loss(ones, 1)


# --------------------------------------------------------------------------- gradients, dtype
def _gradcheck_case(name):
    """(function, inputs) of a tiny float64 case per loss."""
    d = torch.float64

    def leaf(*shape, seed):
        return randn(*shape, seed=seed, dtype=d, requires_grad=True)

    if name == "info_nce":
        return (lambda a, b, c: info_nce(a, b, c, temperature=0.5),
                (leaf(2, 3, seed=30), leaf(2, 3, seed=31), leaf(2, 2, 3, seed=32)))
    if name == "info_nce_in_batch":
        return (lambda a, b: info_nce(a, b, temperature=0.5),
                (leaf(3, 3, seed=30), leaf(3, 3, seed=31)))
    if name == "patch_nce":
        return (lambda a, b: patch_nce(a, b, temperature=0.5, detach_keys=False),
                (leaf(2, 2, 3, seed=33), leaf(2, 2, 3, seed=34)))
    if name == "patch_nce_batch":
        keys = randn(2, 2, 3, seed=34, dtype=d)
        return (lambda a: patch_nce(a, keys, temperature=0.5, negatives="batch"),
                (leaf(2, 2, 3, seed=33),))
    if name == "supervised_contrastive":
        return (lambda x: supervised_contrastive(x, torch.tensor([0, 1, 0]), temperature=0.5),
                (leaf(3, 2, 3, seed=35),))
    if name == "asymmetric_layer_contrast":
        return (lambda b, r: asymmetric_layer_contrast(b, r, k_bg=2, k_rain=1, tau_bg=0.5,
                                                       tau_rain=0.3),
                (leaf(1, 3, 3, seed=36), leaf(1, 3, 3, seed=37)))
    pos = [randn(1, 2, 2, 2, seed=40, dtype=d), randn(1, 3, 1, 1, seed=41, dtype=d)]
    neg = [randn(1, 2, 2, 2, 2, seed=42, dtype=d), randn(1, 3, 1, 1, seed=43, dtype=d)]
    normalize = name.endswith("normalized")
    return (lambda a, b: contrastive_regularization([a, b], pos, neg, weights=(0.5, 1.0),
                                                    normalize=normalize),
            (leaf(1, 2, 2, 2, seed=38), leaf(1, 3, 1, 1, seed=39)))


@pytest.mark.parametrize("name", [
    "info_nce", "info_nce_in_batch", "patch_nce", "patch_nce_batch", "supervised_contrastive",
    "asymmetric_layer_contrast", "contrastive_regularization", "cr_normalized",
])
def test_gradcheck(name):
    fn, inputs = _gradcheck_case(name)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    x = randn(2, 4, 3, seed=44, dtype=dtype)
    assert info_nce(x[0], x[1]).dtype == dtype
    assert patch_nce(x, x.flip(0)).dtype == dtype
    assert supervised_contrastive(x, torch.tensor([0, 0])).dtype == dtype
    assert asymmetric_layer_contrast(x, x.flip(0), k_bg=2, k_rain=1).dtype == dtype
    assert contrastive_regularization([x], [x + 1], [x - 1], weights=(1.0,)).dtype == dtype
    assert lsgan_loss(x, True).dtype == dtype


def test_patch_nce_keep_leaves_the_masked_negatives_out_of_the_denominator():
    import torch

    from napari_nlcl.contrastive.losses import patch_nce

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 5, 8, generator=g), torch.randn(1, 5, 8, generator=g)
    keep = torch.ones(1, 5, 5, dtype=torch.bool)
    assert torch.allclose(patch_nce(q, k, keep=keep), patch_nce(q, k))
    keep[0, 0, 1:] = False  # query 0 keeps only its positive: its loss is 0
    per = patch_nce(q, k, keep=keep, reduction="none")
    assert float(per[0, 0]) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(per[0, 1:], patch_nce(q, k, reduction="none")[0, 1:])
    with pytest.raises(ValueError, match="keep must be a bool tensor"):
        patch_nce(q, k, keep=keep, negatives="batch")
