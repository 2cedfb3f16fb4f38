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
