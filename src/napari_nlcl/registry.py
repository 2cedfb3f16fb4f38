"""Named methods that widgets, the CLI and the function API can offer.

A method is registered with the import path of a factory (``"module:callable"``)
so listing methods never imports torch; the factory runs only when a model is
built.  New methods (learned dehazers, derainers, translators) register here
and appear in every front end without changes to them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """A user-facing option of a method, shown in widgets and accepted by the CLI."""

    name: str
    default: float | int
    minimum: float | int
    maximum: float | int
    label: str
    step: float | int = 1
    help: str = ""  # the widget's tooltip: what the option does, in the user's words


@dataclass(frozen=True)
class MethodSpec:
    name: str
    task: str
    factory: str  # "package.module:callable" returning a Model
    description: str
    options: tuple[Option, ...] = ()


_REGISTRY: dict[tuple[str, str], MethodSpec] = {}

# the transmission floor stored in the shipped default dehazer (scripts/train_dehaze_default.py
# --export writes it; the Dehaze widget shows it as the default of its "min transmission")
DEHAZE_T_MIN = 0.25


def register(spec: MethodSpec) -> None:
    """Add a method; re-registering a (task, name) pair replaces it.

    Names are per task: ``"default"`` is a dehazer for ``task="dehaze"`` and a
    derainer for ``task="derain"``.
    """
    if ":" not in spec.factory:
        raise ValueError(f"factory must look like 'module:callable', got {spec.factory!r}")
    _REGISTRY[(spec.task, spec.name)] = spec


def methods(task: str | None = None) -> list[MethodSpec]:
    """Registered methods, optionally only those for ``task``."""
    return [s for s in _REGISTRY.values() if task is None or s.task == task]


def get(name: str, task: str | None = None) -> MethodSpec:
    """The method called ``name`` (of ``task``; without a task the name must be unique)."""
    found = [s for s in methods(task) if s.name == name]
    if len(found) == 1:
        return found[0]
    if not found:
        names = ", ".join(repr(s.name) for s in methods(task)) or "none"
        what = f"{task} method" if task else "method"
        raise ValueError(f"unknown {what} {name!r}; available: {names}")
    tasks = ", ".join(repr(s.task) for s in found)
    raise ValueError(f"method name {name!r} exists for several tasks ({tasks}); say which task")


def build(name: str, task: str | None = None, **kwargs: Any):
    """Build the model of method ``name`` with keyword options."""
    spec = get(name, task)
    module, attr = spec.factory.split(":")
    factory = getattr(importlib.import_module(module), attr)
    valid = _valid_options(spec, factory)
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        listed = ", ".join(sorted(valid)) if valid else "none"
        raise TypeError(f"method {name!r} ({spec.task}) has no option {', '.join(map(repr, unknown))}; "
                        f"its options: {listed}")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise TypeError(f"bad option for method {name!r}: {exc}") from exc


def _valid_options(spec: MethodSpec, factory: Any) -> set[str]:
    """The declared options, and the factory's own named parameters (never a ``**catch-all``)."""
    import inspect

    names = {o.name for o in spec.options}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return names
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return names | {p.name for p in params if p.kind in kinds}


register(
    MethodSpec(
        name="default",
        task="dehaze",
        factory="napari_nlcl.nets.aecr:default_model",
        description="AECR-Net-style network trained by napari-nlcl on synthetic haze (RGB): "
                    "transmission and airlight, inverted through the scattering model",
        options=(Option("t_min", DEHAZE_T_MIN, 0.02, 0.5, "min transmission (t_min)", 0.01,
                       help="How much haze may be taken away at most: lower removes more haze in dense "
                       "areas but amplifies noise there; higher keeps more haze"),),
    )
)


register(
    MethodSpec(
        name="dcp",
        task="dehaze",
        factory="napari_nlcl.classical.dcp:DarkChannelPrior",
        description="Dark Channel Prior (He et al. 2009): no training, any number of channels",
        options=(
            Option("omega", 0.95, 0.5, 1.0, "strength (omega)", 0.01,
                   help="Share of the estimated haze to remove (1: all of it; lower keeps some depth cue)"),
            Option("t0", 0.25, 0.01, 0.5, "min transmission (t0)", 0.01,
                   help="Floor of the haze transmission: lower dehazes dense areas more, with more noise"),
            Option("patch", 15, 3, 63, "patch size (px)", 2,
                   help="Neighbourhood of the dark channel: larger is more robust on bright objects, "
                   "smaller follows small structures"),
        ),
    )
)


register(
    MethodSpec(
        name="default",
        task="derain",
        factory="napari_nlcl.nets.derain:default_model",
        description="NLCL background generator (U-Net) trained by napari-nlcl: synthetic rain, then "
                    "unsupervised NLCL on real rain (RGB)",
    )
)


register(
    MethodSpec(
        name="directional",
        task="derain",
        factory="napari_nlcl.classical.directional:classic_derainer",
        description="Directional morphological layer separation: no training, any channels "
                    "(classical baseline)",
        options=(
            Option("strength", 1.0, 0.0, 1.0, "strength", 0.05,
                   help="Share of the detected rain to remove (0: none, 1: all)"),
            Option("width", 9, 3, 25, "max streak width (px)", 2,
                   help="Widest streak treated as rain; wider bright lines are kept as scene"),
            Option("length", 31, 5, 121, "streak length (px)", 2,
                   help="Typical length of the streaks; longer finds long streaks and spares short details"),
            Option("contrast", 1.5, 0.0, 3.0, "dense-rain gain", 0.1,
                   help="Extra removal where streaks are dense (heavy rain); 0 treats all rain alike"),
            Option("max_angle", 35, 0, 45, "max tilt from vertical (deg)", 5,
                   help="Most tilted streaks searched for, in degrees from vertical"),
        ),
    )
)


register(
    MethodSpec(
        name="default",
        task="translate",
        factory="napari_nlcl.nets.translate:default_model",
        description="example CUT translator trained by napari-nlcl: photo to the project's film look "
                    "(RGB; train your own with the Train widget)",
    )
)
