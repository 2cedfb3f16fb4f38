"""The user's model library: trained models saved under a name, listed by every widget.

Models live as ``NAME.pt`` files (weights-only exports of training checkpoints,
loaded with ``weights_only=True``) in one folder per user:

* ``$NAPARI_NLCL_MODELS`` when set, else
* ``platformdirs.user_data_path("napari-nlcl") / "models"`` (e.g.
  ``~/.local/share/napari-nlcl/models`` on Linux,
  ``~/Library/Application Support/napari-nlcl/models`` on macOS,
  ``%LOCALAPPDATA%\\napari-nlcl\\models`` on Windows).

A model's task (dehaze, derain, translate) comes from the recipe that trained
it, so the Dehaze widget lists only dehazing models.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal

ENV_VAR = "NAPARI_NLCL_MODELS"


class _LibraryEvents:
    changed = Signal()


_events = _LibraryEvents()
#: emitted after a model is saved, imported or deleted (widgets refresh their model lists)
changed = _events.changed
_NAME = re.compile(r"^[\w][\w .+-]{0,63}$")


def library_dir(*, create: bool = False) -> Path:
    """The folder of the user's saved models (created when ``create``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = platformdirs.user_data_path("napari-nlcl", appauthor=False) / "models"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class LibraryModel:
    name: str
    path: Path
    task: str
    recipe: str
    steps: int


def _task_of(payload: dict) -> str:
    """The model's task: from its inference block, or (older files) from the recipe that trained it."""
    block = payload.get("inference") or {}
    if block.get("task"):
        return str(block["task"])
    from napari_nlcl.training import recipe_class

    try:
        return recipe_class(payload["recipe"]).task
    except (ValueError, ImportError, TypeError):
        return "unknown"


def list_models(task: str | None = None) -> list[LibraryModel]:
    """Models in the library (optionally of one task), by name; unreadable files are skipped."""
    from napari_nlcl.modelfile import read_checkpoint

    folder = library_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.pt"), key=lambda p: p.stem.lower()):
        try:
            payload = read_checkpoint(path)
        except (ValueError, OSError):
            continue
        entry = LibraryModel(path.stem, path, _task_of(payload), payload["recipe"],
                             int(payload.get("step", 0)))
        if task is None or entry.task == task:
            found.append(entry)
    return found


def check_name(name: str) -> str:
    name = str(name).strip()
    if not _NAME.match(name):
        raise ValueError(
            f"model name {name!r} is not allowed: use up to 64 letters, digits, spaces, '.', '+', "
            "'-' or '_', starting with a letter or digit"
        )
    return name


def save_model(checkpoint: str | os.PathLike, name: str, *, overwrite: bool = False) -> Path:
    """Copy the weights of a model or checkpoint file into the library as ``NAME.pt`` (atomic)."""
    from napari_nlcl.training import export_model, load_recipe

    target = library_dir(create=True) / f"{check_name(name)}.pt"
    if target.exists() and not overwrite:
        raise FileExistsError(f"a model named {name!r} exists already; choose another name or overwrite")
    try:  # only a file that loads as a model enters the library (recipe, settings, weights)
        load_recipe(checkpoint, device="cpu")
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{Path(checkpoint).name} was not added to the library: {first}") from None
    path = export_model(checkpoint, target)
    changed.emit()
    return path


def remove_model(name: str) -> None:
    path = library_dir() / f"{check_name(name)}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no model named {name!r} in {library_dir()}")
    path.unlink()
    changed.emit()
