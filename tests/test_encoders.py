"""Tests of napari_nlcl.contrastive.encoders: taps, projection heads, frozen trunks, loading."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import urllib.error
import weakref
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from napari_nlcl.contrastive import encoders as E  # noqa: E402
from napari_nlcl.contrastive.encoders import (  # noqa: E402
    DEFAULT_LAYERS,
    VGG19_CFG,
    VGG19_URL,
    FeatureExtractor,
    ProjectionHead,
    ProjectionHeads,
    RandomEncoder,
    TinyEncoder,
    VGG19Features,
    default_encoder,
    infer_channels,
    load_encoder,
)

ROOT = Path(__file__).resolve().parents[1]


class Pickled:
    """A custom class: a file holding an instance must be refused by the weights loader."""

    def __init__(self):
        self.payload = "not a tensor"


class Net(nn.Module):
    """A small generator/discriminator-like net with nested names."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3)
        )
        self.head = nn.Conv2d(8, 1, 1)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.head(torch.relu(self.body(torch.relu(self.stem(x)))))


@pytest.fixture
def net():
    return Net()


@pytest.fixture
def x():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------
# FeatureExtractor
# ---------------------------------------------------------------------------------------------


def test_extractor_matches_manual_forward_in_layer_order(net, x):
    stem = net.stem(x)
    b0 = net.body[0](torch.relu(stem))
    b1 = net.body[1](b0)
    b2 = net.body[2](b1)
    layers = ["body.2", "input", "stem", "body.1", "stem"]
    with FeatureExtractor(net, layers) as tap:
        feats = tap(x)
    expected = [b2, x, stem, b1, stem]
    assert len(feats) == len(layers)
    for f, e in zip(feats, expected):
        assert f.shape == e.shape
        torch.testing.assert_close(f, e)
    assert feats[1] is x


def test_extractor_unknown_layer_lists_names(net):
    with pytest.raises(ValueError, match="unknown layer") as info:
        FeatureExtractor(net, ["stem", "body.7"])
    msg = str(info.value)
    assert "body.7" in msg and "'body.0'" in msg and "'head'" in msg and "'input'" in msg
    with pytest.raises(TypeError, match="sequence"):
        FeatureExtractor(net, "stem")
    with pytest.raises(ValueError, match="empty"):
        FeatureExtractor(net, [])
    with pytest.raises(TypeError, match="nn.Module"):
        FeatureExtractor(lambda t: t, ["stem"])


def test_extractor_gradients_and_detach(net, x):
    tap = FeatureExtractor(net, ["stem", "body.2"])
    feats = tap(x)
    assert all(f.requires_grad for f in feats)
    sum(f.square().mean() for f in feats).backward()
    assert net.stem.weight.grad is not None and net.body[2].weight.grad is not None
    net.zero_grad(set_to_none=True)

    xr = x.clone().requires_grad_(True)
    detached = FeatureExtractor(net, ["input", "stem", "body.2"], detach=True)
    feats_d = detached(xr)
    assert all(not f.requires_grad and f.grad_fn is None for f in feats_d)
    for a, b in zip(feats_d[1:], feats):
        torch.testing.assert_close(a, b.detach())
    assert all(p.grad is None for p in net.parameters())
    tap.remove()
    detached.remove()


def test_extractor_hooks_removed(net, x):
    tapped = [net.stem, net.body[1]]
    tap = FeatureExtractor(net, ["stem", "body.1", "input"])
    assert [len(m._forward_hooks) for m in tapped] == [1, 1]
    assert not tap.removed
    tap.remove()
    tap.remove()  # idempotent
    assert tap.removed and [len(m._forward_hooks) for m in tapped] == [0, 0]
    with pytest.raises(RuntimeError, match="removed"):
        tap(x)

    with FeatureExtractor(net, ["stem"]) as tap2:
        assert len(net.stem._forward_hooks) == 1
        tap2(x)
    assert len(net.stem._forward_hooks) == 0

    # an extractor that is dropped takes its hooks with it
    FeatureExtractor(net, ["head"])
    gc.collect()
    assert len(net.head._forward_hooks) == 0


def test_extractor_keeps_no_activations(net, x):
    tap = FeatureExtractor(net, ["stem", "body.2"])
    feats = tap(x)
    refs = [weakref.ref(f) for f in feats]
    del feats
    gc.collect()
    assert all(r() is None for r in refs)  # nothing else holds the activations
    assert tap._state.store is None
    # the module called directly (e.g. to generate an image) records nothing
    net(x)
    assert tap._state.store is None
    tap.remove()


def test_extractor_stop_at_last_skips_the_rest(net, x):
    calls = []
    net.head.register_forward_hook(lambda *a: calls.append("head"))
    full = FeatureExtractor(net, ["stem", "body.0"])
    ref = full(x)
    assert calls == ["head"]
    early = FeatureExtractor(net, ["body.0", "stem"], stop_at_last=True)
    feats = early(x)
    assert calls == ["head"]  # the head did not run again
    torch.testing.assert_close(feats[0], ref[1])
    torch.testing.assert_close(feats[1], ref[0])
    # only the raw input: the module does not run at all
    assert FeatureExtractor(net, ["input"], stop_at_last=True)(x)[0] is x
    assert calls == ["head"]
    full.remove()
    early.remove()


def test_extractor_reused_module_keeps_first_call():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, t):
            return self.lin(self.lin(t))

    m = Shared()
    t = torch.rand(3, 4)
    (out,) = FeatureExtractor(m, ["lin"])(t)
    torch.testing.assert_close(out, m.lin(t))


def test_extractor_on_a_frozen_trunk_matches_its_named_layers():
    enc = TinyEncoder(("relu1_1", "relu3_1"))
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    # features.1 = relu1_1, features.7 = relu3_1
    with FeatureExtractor(enc, ["features.1", "features.7"], stop_at_last=True) as tap:
        tapped = tap(img)
    for a, b in zip(tapped, enc(img)):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------
# Projection heads
# ---------------------------------------------------------------------------------------------


def _patch_features(feats, n=8):
    """(B, C, H, W) -> (B, n, C) at fixed positions, as a patch sampler would."""
    out = []
    for f in feats:
        flat = f.flatten(2).transpose(1, 2)  # (B, HW, C)
        idx = torch.arange(n) % flat.shape[1]
        out.append(flat[:, idx])
    return out


def test_heads_are_eager_and_all_parameters_are_trained(net, x):
    tap = FeatureExtractor(net, ["stem", "body.0", "body.2"])
    channels = infer_channels(tap, (1, 3, 16, 16))
    assert channels == [4, 6, 8]
    g = torch.Generator().manual_seed(0)
    heads = ProjectionHeads(channels, out_dim=16, hidden=32, generator=g)
    params = list(heads.parameters())
    assert len(params) == 3 * 4  # 2 Linear layers (weight + bias) per head, before any forward
    # the optimiser is created before the first forward (CUT's released code: after)
    opt = torch.optim.SGD(heads.parameters(), lr=0.5)
    before = [p.detach().clone() for p in params]

    q = heads(_patch_features(tap(x)))
    k = heads(_patch_features(tap(torch.flip(x, dims=[-1]))))
    # PatchNCE-style loss: patch i of q should match patch i of k
    loss = 0
    for qi, ki in zip(q, k):
        logits = torch.bmm(qi, ki.transpose(1, 2)) / 0.07  # (B, N, N)
        target = torch.arange(qi.shape[1]).expand(qi.shape[0], -1)
        loss = loss + nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
    loss.backward()
    for name, p in heads.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    opt.step()
    for (name, p), b in zip(heads.named_parameters(), before):
        assert not torch.equal(p, b), name
    tap.remove()


@pytest.mark.parametrize("shape", [(2, 5, 12), (7, 12), (12,)])
def test_head_embeddings_are_unit_norm(shape):
    head = ProjectionHead(12, out_dim=8, hidden=16)
    z = head(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    assert z.shape == (*shape[:-1], 8)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(shape[:-1]))


def test_heads_shape_errors_and_seeding():
    heads = ProjectionHeads([4, 6], out_dim=8)
    with pytest.raises(ValueError, match="2 heads"):
        heads([torch.rand(2, 4)])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        heads[0](torch.rand(2, 4, 5, 5))
    with pytest.raises(ValueError, match="last axis"):
        heads([torch.rand(2, 5), torch.rand(2, 6)])
    with pytest.raises(TypeError):
        ProjectionHeads(4)
    with pytest.raises(ValueError, match="positive"):
        ProjectionHead(0)
    a = ProjectionHeads([4, 6], generator=torch.Generator().manual_seed(5))
    b = ProjectionHeads([4, 6], generator=torch.Generator().manual_seed(5))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_infer_channels_leaves_module_state_alone():
    bn_net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 7, 3))
    bn_net.train()
    stats = bn_net[1].running_mean.clone()
    assert infer_channels(FeatureExtractor(bn_net, ["2", "3"]), torch.rand(2, 3, 9, 9)) == [5, 7]
    assert all(m.training for m in bn_net.modules())
    assert torch.equal(bn_net[1].running_mean, stats)
    assert infer_channels(TinyEncoder(), (1, 3, 32, 32)) == [16, 32, 64, 96, 128]


# ---------------------------------------------------------------------------------------------
# VGG19
# ---------------------------------------------------------------------------------------------


def expected_vgg_keys(max_conv_index):
    """torchvision's `features.N` keys, computed from the config, up to a conv index."""
    keys, i = set(), 0
    for v in VGG19_CFG:
        if v == "M":
            i += 1
        else:
            if i <= max_conv_index:
                keys |= {f"features.{i}.weight", f"features.{i}.bias"}
            i += 2  # conv, relu
    return keys


def reference_vgg(state, x, taps):
    """Functional VGG19 reading torchvision keys directly (independent of the module)."""
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    out, i = {}, 0
    for v in VGG19_CFG:
        if v == "M":
            x = nn.functional.max_pool2d(x, 2)
            i += 1
        else:
            w, b = state[f"features.{i}.weight"], state[f"features.{i}.bias"]
            x = torch.relu(nn.functional.conv2d(x, w, b, padding=1))
            out[i + 1] = x
            i += 2
        if i > max(taps):
            break
    return [out[t] for t in taps]


@pytest.fixture(scope="module")
def vgg_full_state():
    """A random torchvision-style VGG19 state dict (all convs) plus fake classifier keys."""
    sd = VGG19Features(("relu5_4",), seed=1).state_dict()
    sd["classifier.0.weight"] = torch.zeros(3, 2)  # the real ones are 4096 x 25088; ignored
    sd["classifier.0.bias"] = torch.zeros(3)
    sd["classifier.6.weight"] = torch.zeros(5, 3)
    return sd


def test_vgg_key_mapping_matches_torchvision_layout():
    keys = set(VGG19Features(DEFAULT_LAYERS).state_dict())
    assert keys == expected_vgg_keys(28)
    assert "features.28.weight" in keys and "features.30.weight" not in keys
    assert set(VGG19Features(("relu5_4",)).state_dict()) == expected_vgg_keys(34)
    assert set(VGG19Features(("relu2_1",)).state_dict()) == expected_vgg_keys(5)
    assert expected_vgg_keys(34) == {f"features.{i}.{p}" for i in
                                     (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
                                     for p in ("weight", "bias")}  # fmt: skip
    assert set(E.trunk_state_shapes(VGG19_CFG)) == expected_vgg_keys(34)


def test_vgg_shapes_and_frozen():
    vgg = VGG19Features()
    assert vgg.name == "vgg19" and vgg.layers == DEFAULT_LAYERS
    assert vgg.channels == (64, 128, 256, 512, 512) and vgg.strides == (1, 2, 4, 8, 16)
    assert len(vgg.features) == 30  # built up to relu5_1 only
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    feats = vgg(x)
    assert [tuple(f.shape) for f in feats] == [
        (2, 64, 64, 64), (2, 128, 32, 32), (2, 256, 16, 16), (2, 512, 8, 8), (2, 512, 4, 4)
    ]  # fmt: skip
    assert all(not p.requires_grad for p in vgg.parameters())
    assert not vgg.training
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    # frozen weights, but gradients reach the input (perceptual / contrastive losses need it)
    sum(f.mean() for f in feats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_vgg_input_checks():
    vgg = VGG19Features(("relu1_1", "conv2_2", "pool2"))
    assert vgg.channels == (64, 128, 128) and vgg.strides == (1, 2, 4)
    gray = torch.rand(1, 1, 8, 8)
    for a, b in zip(vgg(gray), vgg(gray.expand(-1, 3, -1, -1))):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        vgg(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        vgg(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        vgg(torch.rand(1, 3, 2, 8))
    with pytest.raises(ValueError, match="relu9_1") as info:
        VGG19Features(("relu9_1",))
    assert "'relu5_4'" in str(info.value) and "'pool3'" in str(info.value)


def test_vgg_imagenet_loading_through_torch_hub(monkeypatch, vgg_full_state):
    calls = []

    def fake_load(url, **kwargs):
        calls.append((url, kwargs))
        return dict(vgg_full_state)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_load)
    vgg = VGG19Features(("relu1_1", "relu3_1", "relu5_1"), weights="imagenet")
    assert calls == [(VGG19_URL, {"progress": True, "check_hash": True, "map_location": "cpu",
                                  "weights_only": True})]  # fmt: skip
    assert vgg.weights_source == "imagenet"
    for k, v in vgg.state_dict().items():
        assert torch.equal(v, vgg_full_state[k]), k
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for a, b in zip(vgg(img), reference_vgg(vgg_full_state, img, [1, 11, 29])):
        torch.testing.assert_close(a, b)
    # load_encoder("vgg19") means the ImageNet weights
    assert load_encoder("vgg19", layers=("relu1_1",)).weights_source == "imagenet"


def test_vgg_offline_error_says_what_to_do(monkeypatch):
    def offline(url, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(OSError) as info:
        VGG19Features(("relu1_1",), weights="imagenet")
    msg = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "weights='/path/to/vgg19-dcbb9e9d.pth'" in msg
    assert "offline" in msg and "tiny" in msg


def test_vgg_local_file_round_trip(tmp_path):
    src = VGG19Features(("relu2_1",), seed=3)
    path = tmp_path / "vgg_part.pth"
    torch.save(src.state_dict(), path)
    loaded = VGG19Features(("relu1_1", "relu2_1"), weights=path)
    assert loaded.weights_source == str(path)
    img = torch.rand(1, 3, 16, 16)
    same = VGG19Features(("relu1_1", "relu2_1"), weights=src.state_dict())
    for a, b in zip(loaded(img), same(img)):
        torch.testing.assert_close(a, b)
    # a DataParallel-prefixed dict also loads
    prefixed = {f"module.{k}": v for k, v in src.state_dict().items()}
    VGG19Features(("relu2_1",), weights=prefixed)
    # ...but not when it lacks deeper layers that are asked for
    with pytest.raises(ValueError, match="missing keys.*features.7.weight"):
        VGG19Features(("relu2_2",), weights=path)


def test_vgg_bad_weights_are_refused(tmp_path):
    good = VGG19Features(("relu1_1",)).state_dict()
    with pytest.raises(ValueError, match=r"wrong shapes features.0.weight: \(64, 1, 3, 3\)"):
        VGG19Features(("relu1_1",), weights={**good, "features.0.weight": torch.zeros(64, 1, 3, 3)})
    with pytest.raises(ValueError, match="missing keys.*features.0.bias"):
        VGG19Features(("relu1_1",), weights={"features.0.weight": good["features.0.weight"]})
    with pytest.raises(ValueError, match="unexpected keys.*features.1.running_mean"):  # VGG19-BN
        VGG19Features(("relu1_1",), weights={**good, "features.1.running_mean": torch.zeros(64)})
    as_list = tmp_path / "list.pth"
    torch.save([good["features.0.weight"]], as_list)
    with pytest.raises(ValueError, match="expected a state dict"):
        VGG19Features(("relu1_1",), weights=as_list)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        VGG19Features(("relu1_1",), weights=corrupt)
    truncated = tmp_path / "truncated.pth"
    torch.save(good, tmp_path / "full.pth")
    truncated.write_bytes((tmp_path / "full.pth").read_bytes()[:5000])
    with pytest.raises(ValueError, match="corrupt"):
        VGG19Features(("relu1_1",), weights=truncated)

    pickled = tmp_path / "pickled.pth"
    torch.save({**good, "extra": Pickled()}, pickled)
    with pytest.raises(ValueError, match=r"pickled Python object \(.*Pickled\)"):
        VGG19Features(("relu1_1",), weights=pickled)
    with pytest.raises(FileNotFoundError, match="imagenett"):
        VGG19Features(("relu1_1",), weights="imagenett")
    with pytest.raises(TypeError):
        VGG19Features(("relu1_1",), weights=3)  # type: ignore[arg-type]


def test_never_calls_torch_load_without_weights_only(monkeypatch, tmp_path):
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / "w.pth"
    torch.save(VGG19Features(("relu1_1",)).state_dict(), path)
    VGG19Features(("relu1_1",), weights=path)
    TinyEncoder(("relu1_1",))
    assert seen == [True, True]


# ---------------------------------------------------------------------------------------------
# Offline encoders
# ---------------------------------------------------------------------------------------------


def test_tiny_encoder_loads_the_shipped_weights():
    from importlib import resources

    ref = resources.files("napari_nlcl.weights").joinpath(E.TINY_WEIGHTS_FILE)
    data = ref.read_bytes()
    assert len(data) < 2 * 1024**2
    assert hashlib.sha256(data).hexdigest() == E.TINY_WEIGHTS_SHA256

    enc = TinyEncoder()
    assert enc.name == "tiny" and enc.weights_source == "shipped"
    assert enc.channels == (16, 32, 64, 96, 128) and enc.strides == (1, 2, 4, 8, 16)
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    feats = enc(img)
    assert [tuple(f.shape) for f in feats] == [
        (2, 16, 64, 64), (2, 32, 32, 32), (2, 64, 16, 16), (2, 96, 8, 8), (2, 128, 4, 4)
    ]  # fmt: skip
    # deterministic, frozen
    again = TinyEncoder()(img)
    assert all(torch.equal(a, b) for a, b in zip(feats, enc(img)))
    assert all(torch.equal(a, b) for a, b in zip(feats, again))
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training
    # a shallower encoder reads the same file and gives the same features
    shallow = TinyEncoder(("relu2_1",))
    assert len(shallow.features) == 5
    torch.testing.assert_close(shallow(img)[0], feats[1])


def test_tiny_encoder_is_calibrated_on_natural_images():
    from skimage import data

    img = torch.from_numpy(data.astronaut()[100:164, 180:244].copy()).permute(2, 0, 1)[None] / 255.0
    for f in TinyEncoder()(img.float()):
        active = (f > 0).float().mean().item()
        assert 0.2 < active < 0.8  # no dead or saturated layers
        assert 0.05 < f.mean().item() < 2.0
    flat = TinyEncoder(("relu1_1",))(torch.full((1, 3, 32, 32), 0.5))[0]
    edges = TinyEncoder(("relu1_1",))(img[..., :32, :32].float())[0]
    assert edges.std() > 3 * flat[..., 2:-2, 2:-2].std()  # responds to structure


def test_make_offline_encoder_script_reproduces_the_shipped_file():
    path = ROOT / "scripts" / "make_offline_encoder.py"
    spec = importlib.util.spec_from_file_location("make_offline_encoder", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rebuilt = script.make_state_dict(0)
    shipped = E.read_weights_file(script.DEFAULT_OUT)
    assert set(rebuilt) == set(shipped)
    for k in shipped:
        assert rebuilt[k].dtype == torch.float32
        torch.testing.assert_close(rebuilt[k], shipped[k], rtol=1e-5, atol=1e-6)


def test_random_encoder_is_seeded():
    a, b, c = RandomEncoder(0), RandomEncoder(0), RandomEncoder(1)
    assert a.name == "random" and not a.training
    assert all(not p.requires_grad for p in a.parameters())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for (k, pa), pb, pc in zip(sa.items(), sb.values(), sc.values()):
        assert torch.equal(pa, pb), k
        if k.endswith("weight"):
            assert not torch.equal(pa, pc), k
    # a layer's weights do not depend on how deep the trunk is built
    shallow = RandomEncoder(0, ("relu2_1",))
    for k, v in shallow.state_dict().items():
        assert torch.equal(v, a.state_dict()[k])
    # orthogonal rows (He gain)
    w = a.features[3].weight.flatten(1)  # conv2_1: 32 x 144
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(32), atol=1e-5, rtol=0)


def test_load_encoder_names():
    assert load_encoder("tiny").name == "tiny"
    assert load_encoder("random", seed=2).weights_source == "random orthogonal (seed 2)"
    with pytest.raises(ValueError, match="unknown encoder 'resnet'"):
        load_encoder("resnet")
    with pytest.raises(ValueError, match="takes no weights"):
        load_encoder("random", weights="x.pth")


@pytest.fixture
def hub_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(*args, **kwargs):  # default_encoder must never download
        raise AssertionError("default_encoder tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path / "hub"


def test_default_encoder_falls_back_to_tiny_offline(hub_dir):
    enc = default_encoder()
    assert enc.name == "tiny" and enc.layers == DEFAULT_LAYERS
    assert load_encoder("default").name == "tiny"


def test_default_encoder_uses_cached_vgg19(hub_dir):
    cached = E.vgg19_cache_path()
    assert cached == hub_dir / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    torch.save(VGG19Features(("relu1_1",), seed=4).state_dict(), cached)
    enc = default_encoder(("relu1_1",))
    assert enc.name == "vgg19" and enc.weights_source == str(cached)

    cached.write_bytes(b"corrupt")
    with pytest.warns(RuntimeWarning, match="cached VGG19"):
        enc = default_encoder(("relu1_1",))
    assert enc.name == "tiny"


def test_vgg_corrupt_hub_cache_says_delete_it(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = E.vgg19_cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")

    def read_cache(url, **kwargs):  # what torch.hub does with a broken cached file
        raise RuntimeError("PytorchStreamReader failed reading zip archive")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", read_cache)
    with pytest.raises(ValueError, match="delete it"):
        VGG19Features(("relu1_1",), weights="imagenet")
