"""The recipe base class and the registry of recipes (checkpoints refer to recipes by name)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from napari_nlcl.modelfile import config_from_dict
from napari_nlcl.named import Registry


class Recipe:
    """Base class of a training recipe.

    Subclasses set ``name``, ``version`` and ``Config`` (a dataclass), build
    their networks in ``__init__(config, *, device, generator)`` and register
    them with :meth:`add_network` / :meth:`add_optimizer`, and implement
    :meth:`training_step` (which calls :meth:`backward_step` for each
    optimiser) and :meth:`inference_model`.  ``data_sources`` names the
    sources a batch must contain.
    """

    name: ClassVar[str] = "recipe"
    #: what its models do (``ModelInfo.task``): widgets list models by task
    task: ClassVar[str] = "identity"
    version: ClassVar[int] = 1
    Config: ClassVar[type] = object
    data_sources: ClassVar[tuple[str, ...]] = ("image",)
    #: all source names the recipe understands (several modes may use different subsets)
    accepted_sources: ClassVar[tuple[str, ...]] = ()
    #: whether the sources are aligned pairs (same crop everywhere)
    paired: ClassVar[bool] = False
    #: model file that ``--from default`` starts from, if the package ships one
    default_weights: ClassVar[str | None] = None
    #: whether the front ends offer the shipped model as the starting point first (fine-tuning
    #: a derainer makes sense; a translator is usually trained anew for each pair of domains)
    fine_tune_by_default: ClassVar[bool] = True
    #: learning-rate schedule the front ends use unless told otherwise (see TrainConfig)
    schedule: ClassVar[str] = "constant"
    #: learning rate the front ends propose when they start from a trained model (None: their
    #: general default); a well-trained model can need a much gentler rate than a new one
    fine_tune_lr: ClassVar[float | None] = None
    #: the settings a user may want to change, ``name -> (label, help)`` in the order the Train
    #: widget shows them; the others (sampling sizes, banks, architecture) sit behind its
    #: "every setting" switch under their field names
    user_settings: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    def proposed_lr(cls, fine_tuning: bool, general: float) -> float:
        """The learning rate a front end proposes: ``fine_tune_lr`` when fine-tuning, else ``general``."""
        return cls.fine_tune_lr if fine_tuning and cls.fine_tune_lr is not None else general

    @classmethod
    def plan_data(cls, given: Iterable[str]) -> tuple[dict[str, Any], bool]:
        """Recipe-config overrides and the ``paired`` flag for the data sources a user gave.

        The default accepts exactly ``data_sources``; recipes with several modes
        (e.g. dehazing with or without clear images) override this.
        """
        given = sorted(given)
        if given != sorted(cls.data_sources):
            raise ValueError(f"recipe {cls.name!r} takes data {list(cls.data_sources)}, got {given}")
        return {}, cls.paired

    @classmethod
    def data_options(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Extra :class:`~napari_nlcl.training.data.RandomCrops` arguments for recipe settings ``settings``
        (e.g. random zooms in single-image translation); none by default."""
        return {}

    @classmethod
    def check_sources(cls, given: Iterable[str], what: str) -> set[str]:
        """``given`` as a set, refused when empty or naming a source outside ``accepted_sources``."""
        given = set(given)
        if not given or given - set(cls.accepted_sources):
            raise ValueError(f"{cls.name} training takes {what}, got {sorted(given)}")
        return given

    def __init__(self, config: Any, *, device: Any = "cpu", generator: torch.Generator | None = None):
        self.config = config
        self.device = torch.device(device)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.grad_clip: float | None = None
        self.scaler: torch.amp.GradScaler | None = None

    # building ----------------------------------------------------------------
    def add_network(self, name: str, net: nn.Module) -> nn.Module:
        self.networks[name] = net.to(self.device)
        return self.networks[name]

    def add_optimizer(self, name: str, params: Iterable, *, lr: float, betas=(0.5, 0.999)):
        params = list(params)
        if not params:
            raise ValueError(f"optimizer {name!r} has no parameters")
        self.optimizers[name] = torch.optim.Adam(params, lr=lr, betas=betas)
        return self.optimizers[name]

    # training ------------------------------------------------------------------
    def backward_step(self, loss: torch.Tensor, optimizer: str) -> None:
        """Backward ``loss`` and step ``optimizer`` (AMP scaling and clipping included)."""
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{self.name}: loss became {loss.item()} at this step; lower the learning rate "
                "or turn off mixed precision"
            )
        scaler = self.scaler
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            if self.grad_clip:
                scaler.unscale_(opt)
                self._clip(opt)
            scaler.step(opt)
        else:
            loss.backward()
            if self.grad_clip:
                self._clip(opt)
            opt.step()

    def _clip(self, opt: torch.optim.Optimizer) -> None:
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.grad_clip)

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)

    def training_step(self, batch: Mapping[str, torch.Tensor], step: int) -> dict[str, float]:
        raise NotImplementedError

    def inference_model(self) -> nn.Module:
        """The network used at inference (with an ``info: ModelInfo``)."""
        raise NotImplementedError

    def inference_block(self) -> dict[str, str] | None:
        """The model file's inference block for :meth:`inference_model` (:func:`napari_nlcl.nets.inference_block`).

        ``None`` when the network's class is not a registered architecture: such a
        file is applied through its recipe (which imports the training code).
        """
        from napari_nlcl import nets

        net = self.inference_model()
        names = [name for name, module in self.networks.items() if module is net]
        try:
            nets.arch_of(net)
        except ValueError:
            return None
        if not names:
            raise ValueError(f"recipe {self.name!r}: its inference model is not one of its networks")
        return nets.inference_block(net, names[0])

    def build_monitor(self, data: Any, *, seed: int = 0) -> Any:
        """A quality monitor (``score(net) -> float``, higher is better; see
        :mod:`napari_nlcl.training.monitor`) built from ``data`` and the current networks at the
        start of a run, or None when the recipe has none for its mode."""
        return None

    @torch.no_grad()
    def preview(self, image: np.ndarray) -> np.ndarray:
        """Apply the current model to one image (numpy in, numpy out)."""
        from napari_nlcl.inference import predict

        model = self.inference_model()
        was_training = model.training
        try:
            return predict(image, model, device=self.device)
        finally:
            model.train(was_training)

    def start_from(self, networks: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Initialise from another model's weights before fine-tuning (matching names only)."""
        loaded = 0
        for name, state in networks.items():
            if name in self.networks:
                self.networks[name].load_state_dict(state)
                loaded += 1
        if not loaded:
            raise ValueError(f"none of the networks {sorted(networks)} belong to recipe {self.name!r}")

    # state ---------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Recipe-specific tensors/values to checkpoint (override when needed)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass


_RECIPES = Registry("recipe")


def register_recipe(name: str, path: str) -> None:
    """Register recipe class ``"module:Class"`` under ``name`` (checkpoints refer to it)."""
    _RECIPES.register(name, path)


def recipe_names() -> list[str]:
    return _RECIPES.names()


def recipe_class(name: str) -> type[Recipe]:
    cls = _RECIPES.load(name)
    if not (isinstance(cls, type) and issubclass(cls, Recipe)):
        raise TypeError(f"registered recipe {name!r} is not a Recipe subclass")
    return cls


def build_recipe(name: str, config: Any = None, *, device: Any = "cpu", seed: int = 0) -> Recipe:
    cls = recipe_class(name)
    if config is None:
        config = cls.Config()
    elif isinstance(config, Mapping):
        config = config_from_dict(cls.Config, config)
    torch_gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))  # network initialisation is seeded too
        return cls(config, device=device, generator=torch_gen)


register_recipe("dehaze", "napari_nlcl.training.dehaze:DehazeRecipe")
register_recipe("derain", "napari_nlcl.training.derain:DerainRecipe")
register_recipe("translate", "napari_nlcl.training.translate:TranslateRecipe")
