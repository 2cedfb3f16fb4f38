"""Collection rules for the whole repository (the tests' own fixtures are in tests/conftest.py).

``python -m pytest`` collects ``tests/`` and the docstring examples of ``src/napari_nlcl``
(``--doctest-modules``, see pyproject.toml). Here:

* the napari widgets (``src/napari_nlcl/_napari``) are not imported without napari, and
  their examples carry the ``gui`` marker like the widget tests;
* the examples are skipped, with a line in the header, when ``napari_nlcl`` is imported
  from somewhere else than this tree's ``src/`` (a non-editable install, as in tox):
  collecting them would import a second copy of the package;
* the scripts in ``benchmarks/``, ``scripts/``, ``docs/``, ``runs/`` and ``sample_data/``
  are never collected (``--doctest-modules`` would import, i.e. run, them);
* every test and example gets its own empty model library, never the user's real one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "src" / "napari_nlcl"
WIDGETS = PACKAGE / "_napari"

collect_ignore = ["benchmarks", "scripts", "docs", "runs", "sample_data"]


def _installed_elsewhere() -> str | None:
    """Where ``napari_nlcl`` is imported from, when that is not this tree's ``src/``."""
    spec = importlib.util.find_spec("napari_nlcl")
    origin = Path(spec.origin).resolve().parent if spec and spec.origin else None
    return None if origin is None or origin == PACKAGE else str(origin)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


HAS_NAPARI = _has("napari")
ELSEWHERE = _installed_elsewhere()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    path = collection_path.resolve()
    if ELSEWHERE and (path == PACKAGE or PACKAGE in path.parents):
        return True
    if not HAS_NAPARI and (path == WIDGETS or WIDGETS in path.parents):
        return True
    return None


def pytest_report_header(config: pytest.Config) -> str | None:
    if ELSEWHERE:
        return (f"napari_nlcl is imported from {ELSEWHERE}: the examples in src/napari_nlcl are not "
                "collected (install the package editable to run them)")
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.DoctestItem) and WIDGETS in item.path.resolve().parents:
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def model_library(tmp_path_factory, monkeypatch):
    """Every test gets its own empty model library (never the user's real one)."""
    path = tmp_path_factory.mktemp("model_library")
    monkeypatch.setenv("NAPARI_NLCL_MODELS", str(path))
    return path
