"""The package's floors: inference never needs training code, and no module uses another's privates."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_nlcl"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _private_uses(path: Path) -> list[str]:
    """``from napari_nlcl.x import _y`` and ``x._y`` on an imported napari_nlcl module, outside ``x``."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            source = node.module
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            if not source.startswith("napari_nlcl") or source == me:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {source}.{alias.name}")
                else:
                    modules[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("napari_nlcl") and alias.asname:
                    modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {modules[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_another():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in _private_uses(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_private_name_check_finds_one(tmp_path):
    bad = PACKAGE / "_architecture_probe.py"  # a module of the package, for the check's own test
    bad.write_text("from napari_nlcl.io import _imread\nfrom napari_nlcl import io as m\nm._write\n")
    try:
        assert len(_private_uses(bad)) == 2
    finally:
        bad.unlink()


@pytest.mark.parametrize("call", [
    "napari_nlcl.derain(img, device='cpu')",
    "napari_nlcl.dehaze(img, device='cpu')",
    "napari_nlcl.translate(img, device='cpu')",
    "napari_nlcl.dehaze(img, model='dcp', device='cpu')",
])
def test_applying_a_model_imports_no_training_code(call):
    code = (
        "import sys, numpy as np, napari_nlcl\n"
        "img = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)\n"
        f"out = {call}\n"
        "assert out.shape == img.shape\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('napari_nlcl.training', 'napari_nlcl.contrastive')))\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:] + run.stdout


SHIPPED = ["derain_default.pt", "dehaze_default.pt", "translate_default.pt"]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_built_from_its_inference_block_equals_the_one_its_recipe_builds(name):
    import numpy as np
    import torch

    from napari_nlcl.inference.loading import load_model_file
    from napari_nlcl.modelfile import read_checkpoint
    from napari_nlcl.training import load_recipe

    path = PACKAGE / "weights" / name
    assert read_checkpoint(path).get("inference"), "the shipped file has no inference block"
    from_block = load_model_file(path)
    from_recipe = load_recipe(path)[0].inference_model().eval()
    assert type(from_block) is type(from_recipe) and from_block.info == from_recipe.info
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32))
    with torch.no_grad():
        torch.testing.assert_close(from_block(x), from_recipe(x), rtol=0, atol=0)


def test_a_file_without_an_inference_block_still_loads_and_can_be_given_one(tmp_path):
    import numpy as np
    import torch

    from napari_nlcl.inference.loading import load_model_file
    from napari_nlcl.modelfile import read_checkpoint, save_checkpoint
    from napari_nlcl.training.checkpoints import add_inference_block

    payload = read_checkpoint(PACKAGE / "weights" / "dehaze_default.pt")
    old = tmp_path / "old.pt"
    save_checkpoint(old, {k: v for k, v in payload.items() if k != "inference"})
    x = torch.from_numpy(np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32))
    with torch.no_grad():
        legacy = load_model_file(old)(x)
        assert add_inference_block(old) is True and add_inference_block(old) is False
        assert read_checkpoint(old)["inference"] == payload["inference"]
        torch.testing.assert_close(load_model_file(old)(x), legacy, rtol=0, atol=0)


def test_a_trained_file_carries_the_block_and_applies_without_training_code(tmp_path):
    import numpy as np

    from napari_nlcl.training.plan import plan_run

    frames = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    out = tmp_path / "m.pt"
    trainer = plan_run("dehaze", {"hazy": frames}, start=None, steps=1, crop=32, batch_size=1,
                       monitor_every=0, device="cpu", checkpoint=out)
    trainer.fit()
    code = (
        "import sys, numpy as np, napari_nlcl\n"
        f"out = napari_nlcl.dehaze(np.zeros((48, 48, 3), np.float32), model={str(out)!r}, device='cpu')\n"
        "assert out.shape == (48, 48, 3)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('napari_nlcl.training', 'napari_nlcl.contrastive')))\n"
        "assert not bad, bad\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_a_damaged_inference_block_is_refused_with_a_message(tmp_path):
    from napari_nlcl.inference.loading import load_model_file
    from napari_nlcl.modelfile import read_checkpoint, save_checkpoint

    payload = read_checkpoint(PACKAGE / "weights" / "dehaze_default.pt")
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {**payload, "inference": {**payload["inference"], "arch": "no-such-net"}})
    with pytest.raises(ValueError, match="unknown network architecture 'no-such-net'"):
        load_model_file(bad)
    save_checkpoint(bad, {**payload, "inference": {**payload["inference"], "network": "gone"}})
    with pytest.raises(ValueError, match="no weights for its network 'gone'"):
        load_model_file(bad)


@pytest.mark.parametrize("module", ["checks", "model", "modelfile", "metrics", "named"])
def test_the_ground_floor_imports_no_upper_floor(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    upper = ("napari_nlcl.inference", "napari_nlcl.training", "napari_nlcl.nets", "napari_nlcl.classical",
             "napari_nlcl.contrastive", "napari_nlcl._napari", "napari_nlcl.api", "napari_nlcl.cli")
    assert not sorted(m for m in imported if m.startswith(upper))
