"""Training (napari_nlcl.training) on the toy recipe: trainer loop, schedules, checkpoints, data,
the quality monitor, precision, and the ``train`` command."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from napari_nlcl.modelfile import read_checkpoint
from napari_nlcl.training import TrainConfig, Trainer, export_model, load_recipe
from napari_nlcl.training.data import ImageSource, RandomCrops

pytestmark = pytest.mark.usefixtures("toy_recipe")


def _images(n=4, size=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((n, size // 4, size // 4, 3)).astype(np.float32)
    return np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)  # smooth-ish content


def _data(seed=0, **kw):
    return RandomCrops({"image": _images()}, crop=32, batch_size=2, seed=seed, **kw)


def _frames_folder(tmp_path):
    """Three toy frames as PNG files in ``tmp_path/frames`` (CLI tests)."""
    from napari_nlcl.io import write_image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(_images(n=3)):
        write_image(folder / f"f{i}.png", img)
    return folder


def _trainer(tmp_path=None, steps=50, seed=0, **cfg):
    config = TrainConfig(steps=steps, batch_size=2, crop=32, lr=1e-2, seed=seed, device="cpu", **cfg)
    ckpt = tmp_path / "toy.pt" if tmp_path is not None else None
    return Trainer.from_recipe_name("toy", _data(seed), config, checkpoint=ckpt)


def test_toy_loss_falls_in_50_steps():
    history = _trainer(steps=50).fit()
    losses = [e.losses["l1"] for e in history]
    assert len(losses) == 50
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


def test_events_and_progress(tmp_path):
    t = _trainer(tmp_path, steps=6, checkpoint_every=4, preview_every=3)
    t.preview_image = _images()[0]
    events = list(t.fit_iter())
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 6 and kinds[-1] == "done"
    assert [e.step for e in events if e.kind == "checkpoint"] == [4, 6]
    previews = [e for e in events if e.kind == "preview"]
    assert [e.step for e in previews] == [3, 6]
    assert previews[0].preview.shape == _images()[0].shape
    step = events[0]
    assert step.images_per_s > 0 and step.total == 6 and step.lr == pytest.approx(1e-2)


def test_stop_leaves_valid_checkpoint_and_resume_is_exact(tmp_path):
    # uninterrupted reference
    ref = _trainer(steps=20)
    ref_losses = [e.losses["l1"] for e in ref.fit()]

    # interrupted after 8 steps (what Stop in the GUI does: close the generator)
    run = _trainer(tmp_path, steps=20)
    gen = run.fit_iter()
    first = [next(gen).losses["l1"] for _ in range(8)]
    gen.close()
    payload = read_checkpoint(tmp_path / "toy.pt")
    assert payload["step"] == 8

    resumed = Trainer.resume(tmp_path / "toy.pt", _data(seed=123))  # data RNG comes from the file
    rest = [e.losses["l1"] for e in resumed.fit()]
    assert resumed.step == 20
    np.testing.assert_allclose(first + rest, ref_losses, rtol=1e-6, atol=1e-7)
    for a, b in zip(ref.recipe.net.parameters(), resumed.recipe.net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_weight_average_follows_the_weights_and_is_what_a_model_file_gives(tmp_path):
    run = _trainer(tmp_path, steps=30, ema=0.9)
    trained_params = []
    averages = {k: v.clone() for k, v in run.recipe.net.state_dict().items()}
    for event in run.fit_iter():  # the average is the warmed-up EMA of the weights after each step
        if event.kind != "step":
            continue
        decay = min(0.9, (event.step) / (event.step + 9))
        for k, v in run.recipe.net.state_dict().items():
            averages[k] = decay * averages[k] + (1 - decay) * v
        trained_params.append({k: v.clone() for k, v in run.recipe.net.state_dict().items()})
    for k, v in averages.items():
        torch.testing.assert_close(run.ema["net"][k], v, rtol=1e-5, atol=1e-6)
    last = trained_params[-1]
    assert any(not torch.allclose(run.ema["net"][k], last[k]) for k in last)  # an average, not the last weights
    # the model file gives the average; the trained weights stay for resuming
    payload = read_checkpoint(tmp_path / "toy.pt")
    for k in last:
        torch.testing.assert_close(payload["networks"]["net"][k], last[k])
    recipe, _ = load_recipe(tmp_path / "toy.pt")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(recipe.net(x), run.model(x))
        assert not torch.allclose(run.model(x), run.recipe.net(x))
        # trainer.model is a copy holding the average: the trained network is left as it was
        for k, v in run.recipe.net.state_dict().items():
            torch.testing.assert_close(v, last[k])
    raw, _ = load_recipe(tmp_path / "toy.pt", averaged=False)
    torch.testing.assert_close(raw.net(x), run.recipe.net(x))
    export_model(tmp_path / "toy.pt", tmp_path / "toy_export.pt")
    exported = read_checkpoint(tmp_path / "toy_export.pt")
    assert "ema" not in exported and "optimizers" not in exported
    for k, v in exported["networks"]["net"].items():
        torch.testing.assert_close(v, run.ema["net"][k])
    with pytest.raises(ValueError, match="ema is a decay"):
        TrainConfig(ema=1.0)
    # weights loaded after the trainer was built: the average starts again from them
    other = _trainer(steps=2, ema=0.9)
    other.recipe.net.load_state_dict(last)
    other.restart_average()
    for k, v in last.items():
        torch.testing.assert_close(other.ema["net"][k], v)


def test_resume_continues_the_weight_average_exactly(tmp_path):
    ref = _trainer(steps=16, ema=0.8)
    ref.fit()
    run = _trainer(tmp_path, steps=16, ema=0.8)
    gen = run.fit_iter()
    for _ in range(7):
        next(gen)
    gen.close()
    resumed = Trainer.resume(tmp_path / "toy.pt", _data())
    resumed.fit()
    for k, v in ref.ema["net"].items():
        torch.testing.assert_close(resumed.ema["net"][k], v, rtol=1e-6, atol=1e-7)
    for a, b in zip(ref.recipe.net.parameters(), resumed.recipe.net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_continue_for_more_steps(tmp_path):
    t = _trainer(tmp_path, steps=5)
    t.fit()
    more = Trainer.resume(tmp_path / "toy.pt", _data(), steps=9)
    assert [e.step for e in more.fit()] == [6, 7, 8, 9]


def test_checkpoint_rebuilds_the_model(tmp_path):
    from napari_nlcl import load_model, predict

    t = _trainer(tmp_path, steps=3)
    t.fit()
    recipe, payload = load_recipe(tmp_path / "toy.pt")
    assert payload["recipe"] == "toy"
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(recipe.net(x), t.recipe.net(x))
    model = load_model(tmp_path / "toy.pt")
    out = predict(_images()[0], model, device="cpu")
    assert out.shape == _images()[0].shape


class _Evil:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_unsafe_corrupt_and_foreign_files_are_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "napari-nlcl-checkpoint", "x": _Evil()}, evil)
    with pytest.raises(ValueError, match="could run code"):
        read_checkpoint(evil)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a napari-nlcl model file"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        read_checkpoint(tmp_path / "missing.pt")
    t = _trainer(tmp_path, steps=1)
    t.fit()
    payload = torch.load(tmp_path / "toy.pt", weights_only=True)
    payload["recipe"] = "nonexistent"
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown recipe 'nonexistent'"):
        load_recipe(tmp_path / "other.pt")


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    t = _trainer(tmp_path, steps=2)
    t.fit()
    before = (tmp_path / "toy.pt").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        t.save()
    assert (tmp_path / "toy.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.pt"]


@pytest.mark.parametrize("schedule,end", [("constant", 1.0), ("linear", 0.0), ("cosine", 0.0)])
def test_schedules(schedule, end):
    t = _trainer(steps=10, schedule=schedule, decay_start=0.5)
    lrs = [e.lr for e in t.fit()]
    assert lrs[3] == pytest.approx(1e-2)  # before the decay starts
    assert lrs[-1] == pytest.approx(end * 1e-2, abs=1e-9)
    assert all(a >= b - 1e-12 for a, b in zip(lrs, lrs[1:]))


def test_grad_clip_bounds_the_update():
    t = _trainer(steps=1, grad_clip=1e-6)
    t.recipe.optimizers["net"] = torch.optim.SGD(t.recipe.net.parameters(), lr=1.0)
    before = [p.detach().clone() for p in t.recipe.net.parameters()]
    t.fit()
    delta = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(t.recipe.net.parameters(), before)))
    assert delta <= 1e-6 * 1.01


@pytest.mark.parametrize(
    "kwargs,match",
    [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"), ({"schedule": "step"}, "schedule"),
     ({"grad_clip": 0.0}, "grad_clip"), ({"decay_start": 2.0}, "decay_start")],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unknown_recipe_setting():
    with pytest.raises(ValueError, match="unknown ToyConfig setting"):
        Trainer.from_recipe_name("toy", _data(), TrainConfig(device="cpu"), recipe_config={"depth": 3})


# ----------------------------------------------------------------- data
def test_crops_are_lazy_on_a_long_stack():
    reads: list[int] = []

    def frame(i):
        reads.append(i)
        return np.full((40, 40), i % 255, np.uint8)

    stack = da.stack([da.from_delayed(dask.delayed(frame)(i), (40, 40), np.uint8) for i in range(300)])
    crops = RandomCrops({"image": stack}, crop=16, batch_size=4, seed=0)
    batch = crops.sample()
    assert batch["image"].shape == (4, 1, 16, 16) and batch["image"].dtype == torch.float32
    assert len(reads) <= 4
    for _ in range(10):
        crops.sample()
    assert len(reads) <= 44 and crops.sources["image"].reads == len(reads)


def test_paired_crops_align_and_unpaired_differ():
    a = _images(n=3)
    pairs = RandomCrops({"x": a, "y": a.copy()}, crop=16, batch_size=3, paired=True, seed=1).sample()
    torch.testing.assert_close(pairs["x"], pairs["y"])
    unpaired = RandomCrops({"x": a, "y": a.copy()}, crop=16, batch_size=3, seed=1).sample()
    assert not torch.equal(unpaired["x"], unpaired["y"])


def test_crops_are_seeded_and_zoom_works():
    img = _images(n=1, size=64)[0]
    s1 = RandomCrops({"i": img}, crop=24, zoom=(0.5, 2.0), seed=5).sample()["i"]
    s2 = RandomCrops({"i": img}, crop=24, zoom=(0.5, 2.0), seed=5).sample()["i"]
    torch.testing.assert_close(s1, s2)
    assert s1.shape == (1, 3, 24, 24) and 0 <= s1.min() and s1.max() <= 1


def test_data_errors(tmp_path):
    with pytest.raises(ValueError, match="smaller than the 64 px crop"):
        RandomCrops({"i": np.zeros((32, 40, 3), np.uint8)}, crop=64)
    with pytest.raises(TypeError, match="unsupported dtype"):
        ImageSource(np.zeros((20, 20), bool))
    with pytest.raises(ValueError, match="same number of frames"):
        RandomCrops({"a": np.zeros((2, 20, 20)), "b": np.zeros((3, 20, 20))}, crop=8, paired=True)
    with pytest.raises(FileNotFoundError):
        ImageSource(tmp_path / "nope")
    with pytest.raises(ValueError, match="NaN"):
        ImageSource(np.full((20, 20), np.nan)).frame(0)


# ----------------------------------------------------------------- CLI
def test_cli_train_stop_and_resume(tmp_path, capsys):
    from napari_nlcl import cli

    folder = _frames_folder(tmp_path)
    out = tmp_path / "toy.pt"
    args = ["train", "toy", "--data", str(folder), "-o", str(out), "--steps", "6", "--crop", "32",
            "--device", "cpu", "--checkpoint-every", "0", "-S", "width=4"]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    payload = read_checkpoint(out)
    assert payload["step"] == 6 and '"width": 4' in payload["config"]
    assert cli.main(args[:-4] + ["--resume", "--steps", "9"]) == 0
    assert read_checkpoint(out)["step"] == 9
    assert "ema" not in read_checkpoint(out)
    averaged = tmp_path / "toy_ema.pt"
    ema_args = [str(averaged) if a == str(out) else a for a in args]
    assert cli.main(ema_args + ["--ema", "0.9"]) == 0
    capsys.readouterr()
    assert set(read_checkpoint(averaged)["ema"]) == {"net"}
    assert cli.main(ema_args + ["--ema", "0.9"]) == 2  # a trained model is never replaced silently
    assert "--overwrite replaces it" in capsys.readouterr().err
    assert set(read_checkpoint(averaged)["ema"]) == {"net"}
    assert cli.main(ema_args + ["--ema", "1.5", "--overwrite"]) == 2
    assert "ema is a decay" in capsys.readouterr().err
    assert cli.main(ema_args + ["--overwrite"]) == 0
    capsys.readouterr()
    assert "ema" not in read_checkpoint(averaged)
    assert cli.main(args[:-4] + ["-o", str(tmp_path / "none.pt"), "--resume"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["dehaze", str(folder / "f0.png"), "-m", "dcp", "-o", str(tmp_path / "x.png")]) == 0
    # errors are one line
    assert cli.main(["train", "nope", "--data", str(folder), "-o", str(out)]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "toy", "--data", "other=" + str(folder), "-o", str(out)]) == 2
    assert "unknown data source 'other'" in capsys.readouterr().err
    assert cli.main(["train", "toy", "--data", str(folder), "-o", str(tmp_path / "m.txt")]) == 2


def _interrupted_train(tmp_path, folder, out, signals, extra=()):
    """Run ``napari-nlcl train toy`` in a child process and send it ``signals`` SIGINTs once its
    first checkpoint exists; returns (exit code, stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from napari_nlcl.training import register_recipe; "
            "register_recipe('toy', 'toy_recipe:ToyRecipe'); "
            "from napari_nlcl import cli; sys.exit(cli.main(sys.argv[2:]))")
    args = ["train", "toy", "--data", str(folder), "-o", str(out), "--crop", "32", "--device", "cpu",
            "--steps", "100000", "--checkpoint-every", "3", "-S", "delay=0.05", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tests), *args], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not out.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.05)
        time.sleep(0.23)  # somewhere inside a later step
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.parametrize("signals", [1, 2])
def test_cli_ctrl_c_leaves_the_checkpoint_it_reports_and_resume_is_exact(tmp_path, signals):
    """Ctrl+C lands inside a step: the file holds the step the message names, and --resume
    continues it exactly (same weights as an uninterrupted run)."""
    import re

    from napari_nlcl import cli

    folder = _frames_folder(tmp_path)
    out = tmp_path / "run.pt"
    rc, err = _interrupted_train(tmp_path, folder, out, signals)
    assert rc == 130, err
    found = re.search(r"holds step (\d+)", err)
    assert found, err
    held = int(found.group(1))
    assert read_checkpoint(out)["step"] == held >= 3
    if signals == 1:  # stopped between steps: the step just completed is the one saved
        assert "lost" not in err
    total = held + 3
    common = ["train", "toy", "--data", str(folder), "--crop", "32", "--device", "cpu",
              "--checkpoint-every", "3", "-S", "delay=0"]
    assert cli.main([*common[:-2], "-o", str(out), "--resume", "--steps", str(total)]) == 0
    ref = tmp_path / "ref.pt"
    assert cli.main([*common, "-o", str(ref), "--steps", str(total)]) == 0
    a, b = read_checkpoint(out), read_checkpoint(ref)
    assert a["step"] == b["step"] == total
    for k, v in b["networks"]["net"].items():
        torch.testing.assert_close(a["networks"]["net"][k], v, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------- quality monitor, keep-best, budget
def test_monitor_rises_as_the_output_moves_toward_the_truth():
    from napari_nlcl.training.monitor import ProxyPairs

    clean = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    pairs = ProxyPairs(0.5 * clean + 0.2, clean)

    class TowardTruth(torch.nn.Module):  # undoes a fraction alpha of the known degradation
        def __init__(self, alpha):
            super().__init__()
            self.alpha = torch.nn.Parameter(torch.tensor(float(alpha)))

        def forward(self, x):
            return x + self.alpha * ((x - 0.2) / 0.5 - x)

    scores = [pairs.score(TowardTruth(a)) for a in (0.0, 0.25, 0.5, 0.75, 0.99)]
    assert scores == sorted(scores) and scores[-1] - scores[0] > 20
    with pytest.raises(ValueError, match="one"):
        ProxyPairs(clean, clean[:2])


def test_keep_best_gives_the_monitors_best_and_the_last_stays_reachable(tmp_path):
    config = TrainConfig(steps=40, batch_size=2, crop=32, lr=1e-2, seed=0, device="cpu", monitor_every=2)
    t = Trainer.from_recipe_name("toy", _data(), config, recipe_config={"sabotage_from": 16},
                                 checkpoint=tmp_path / "toy.pt")
    events = list(t.fit_iter())
    mon = [e.monitor for e in events if e.kind == "monitor"]
    assert [m.step for m in mon] == list(range(0, 41, 2))  # the start, then every 2 steps
    history = dict(t.monitor_history)
    best_step = max(history, key=history.get)
    assert 0 < best_step <= 20 and t.best["step"] == best_step
    assert history[40] < history[best_step] - 1  # the sabotaged end is clearly worse
    assert t.monitor.score(t.model, precision=t.precision) == pytest.approx(history[best_step], abs=1e-5)
    assert t.monitor.score(t.last_model(), precision=t.precision) == pytest.approx(history[40], abs=1e-5)
    # the file gives the best, its metadata says which and why; "last" is reachable
    best_net = load_recipe(tmp_path / "toy.pt")[0].inference_model()
    last_net = load_recipe(tmp_path / "toy.pt", which="last")[0].inference_model()
    assert t.monitor.score(best_net, precision=t.precision) == pytest.approx(history[best_step], abs=1e-5)
    assert t.monitor.score(last_net, precision=t.precision) == pytest.approx(history[40], abs=1e-5)
    import json

    meta = json.loads(read_checkpoint(tmp_path / "toy.pt")["metadata"])
    assert meta["kept"]["step"] == best_step and "best" in meta["kept"]["reason"]
    export_model(tmp_path / "toy.pt", tmp_path / "last.pt", which="last")
    assert json.loads(read_checkpoint(tmp_path / "last.pt")["metadata"])["kept"]["step"] == 40
    # keep_best=False: the file gives the last step
    config.keep_best = False
    t2 = Trainer.from_recipe_name("toy", _data(), config, recipe_config={"sabotage_from": 16})
    t2.fit()
    assert t2.monitor.score(t2.model, precision=t2.precision) == pytest.approx(dict(t2.monitor_history)[40], abs=1e-5)


def test_patience_stops_early_and_says_why(tmp_path):
    config = TrainConfig(steps=200, batch_size=2, crop=32, lr=1e-2, seed=0, device="cpu",
                         monitor_every=2, patience=3)
    t = Trainer.from_recipe_name("toy", _data(), config, recipe_config={"sabotage_from": 10},
                                 checkpoint=tmp_path / "toy.pt")
    events = list(t.fit_iter())
    assert t.step < 200 and t.step == t.best["step"] + 6
    assert "not improved for 3 evaluations" in events[-1].message == t.stop_reason
    assert read_checkpoint(tmp_path / "toy.pt")["step"] == t.step


def test_resume_keeps_the_monitor_and_the_best(tmp_path):
    config = TrainConfig(steps=20, batch_size=2, crop=32, lr=1e-2, seed=0, device="cpu", monitor_every=4)
    t = Trainer.from_recipe_name("toy", _data(), config, checkpoint=tmp_path / "toy.pt")
    gen = t.fit_iter()
    while t.step < 9:
        next(gen)
    gen.close()
    r = Trainer.resume(tmp_path / "toy.pt", _data())
    assert r.best["step"] == t.best["step"] == 8 and r.monitor_history == t.monitor_history
    torch.testing.assert_close(r.monitor.targets, t.monitor.targets, atol=1 / 255, rtol=0)
    r.fit()
    assert [s for s, _ in r.monitor_history] == [0, 4, 8, 12, 16, 20]


def test_minute_budget_plans_the_steps_and_ends_on_time(tmp_path):
    now = [0.0]
    config = TrainConfig(steps=100000, batch_size=2, crop=32, lr=1e-2, seed=0, device="cpu",
                         minutes=0.5, schedule="cosine", decay_start=0.0)
    t = Trainer.from_recipe_name("toy", _data(), config, checkpoint=tmp_path / "toy.pt")
    t._clock = lambda: now[0]
    step_fn = t.recipe.training_step

    def slow_step(batch, step):  # every step takes 1.5 s of the mocked clock
        now[0] += 1.5
        return step_fn(batch, step)

    t.recipe.training_step = slow_step
    events = list(t.fit_iter())
    assert t.config.steps == t.step == 19  # 30 s / 1.5 s, planned from the first 10 steps
    assert now[0] <= 30.0
    assert events[-1].kind == "done"
    lrs = [e.lr for e in events if e.kind == "step"]
    assert lrs[-1] < 0.01 * lrs[0]  # the cosine schedule was planned for the budget
    # a run slower than planned still stops at the budget
    now[0] = 0.0
    t2 = Trainer.from_recipe_name("toy", _data(), TrainConfig(steps=100000, batch_size=2, crop=32,
                                                              device="cpu", minutes=0.5))
    t2._clock = lambda: now[0]
    step2 = t2.recipe.training_step

    def slower(batch, step):
        now[0] += 1.0 if step < 10 else 5.0
        return step2(batch, step)

    t2.recipe.training_step = slower
    events = list(t2.fit_iter())
    assert "time budget" in events[-1].message and now[0] <= 35.0


def test_cli_prints_the_monitor_and_keeps_the_best(tmp_path, capsys):
    import json

    from napari_nlcl import cli

    folder = _frames_folder(tmp_path)
    out = tmp_path / "toy.pt"
    args = ["train", "toy", "--data", str(folder), "-o", str(out), "--steps", "30", "--crop", "32",
            "--device", "cpu", "--monitor-every", "3", "--patience", "4", "-S", "sabotage_from=9"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "step 3: quality" in err and "not improved for 4 evaluations" in err
    kept = json.loads(read_checkpoint(out)["metadata"])["kept"]
    assert f"keeps step {kept['step']}" in err and 0 < kept["step"] < 30
    assert read_checkpoint(out)["step"] == kept["step"] + 12  # stopped 4 scores after the best
    assert cli.main(args[:-2] + ["--overwrite", "--keep", "last", "--patience", "0"]) == 0
    capsys.readouterr()
    assert json.loads(read_checkpoint(out)["metadata"])["kept"] == {"step": 30, "reason": "last step"}


def test_damaged_model_files_are_one_clear_error(tmp_path, capsys):
    from napari_nlcl import cli

    t = _trainer(tmp_path, steps=2)
    t.fit()
    good = read_checkpoint(tmp_path / "toy.pt")
    for name, change in {"no_networks": lambda p: p.pop("networks"),
                         "bad_config": lambda p: p.__setitem__("config", "{not json")}.items():
        payload = dict(good)
        change(payload)
        path = tmp_path / f"{name}.pt"
        torch.save(payload, path)
        with pytest.raises(ValueError, match="damaged napari-nlcl model file"):
            read_checkpoint(path)
        img = tmp_path / "x.png"
        from napari_nlcl.io import write_image

        write_image(img, _images(n=1)[0])
        assert cli.main(["dehaze", str(img), "-m", str(path), "-o", str(tmp_path / "o.png")]) == 2
        assert "damaged" in capsys.readouterr().err


@pytest.mark.parametrize("grey_first", [True, False])
def test_a_folder_of_grey_and_colour_images_is_colour_in_either_order(tmp_path, grey_first):
    from napari_nlcl.io import write_image
    from napari_nlcl.training.data import ImageSource

    rgb = (_images(n=1)[0] * 255).astype(np.uint8)
    grey = rgb.mean(-1).astype(np.uint8)
    first, second = (grey, rgb) if grey_first else (rgb, grey)
    write_image(tmp_path / "a.png", first)
    write_image(tmp_path / "b.png", second)
    src = ImageSource(tmp_path)
    assert src.rgb and src.channels == 3
    frames = [src.frame(i) for i in range(len(src))]
    assert all(f.shape == (3, 48, 48) for f in frames)
    crops = RandomCrops({"image": src}, crop=32, batch_size=2, seed=0)
    assert next(iter(crops))["image"].shape == (2, 3, 32, 32)


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("prec", ["float32", "bfloat16"])
def test_training_in_each_cpu_precision_learns_and_keeps_float32_weights(tmp_path, prec):
    t = _trainer(tmp_path, steps=40, precision=prec)
    assert t.precision.name == prec and t.precision.channels_last
    losses = [e.losses["l1"] for e in t.fit()]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    net = t.recipe.networks["net"]
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert net.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    resumed = Trainer.resume(tmp_path / "toy.pt", _data(), steps=45)  # the file loads as usual
    assert resumed.config.precision == prec
    assert sum(e.kind == "step" for e in resumed.fit_iter()) == 5
    switched = Trainer.resume(tmp_path / "toy.pt", _data(), precision="float32")  # may change
    assert switched.precision.name == "float32" and switched.step == 45


def test_training_precision_is_checked():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="float16' needs a CUDA device"):
        _trainer(steps=2, precision="float16")
