"""What a model is built from (ModelSpec) and how an update trains it (UpdateParams).

Both are frozen, validated on construction, and round-trip through plain dicts so that the
daemon can read them from TOML and store them in a manifest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tailord.trainer.errors import ModelError
from tailord.trainer.targets import TASKS

BUILTIN_BACKBONES = ("vector", "image", "text")
HEADS = ("knn", "linear", "mlp", "auto")
METRICS = ("cosine", "euclidean")
WEIGHTINGS = ("distance", "uniform")
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")

_T = TypeVar("_T")
_MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed refuses larger seeds


@dataclass(frozen=True)
class UpdateParams:
    """How one update trains a head; k-NN heads only append and ignore most of these."""

    epochs: int = 10
    learning_rate: float = 0.01
    batch_size: int = 32
    seed: int = 0
    replay: int = 1000  # at most this many earlier samples mixed into an update (trained heads)
    optimizer: str = "adam"  # "adam" | "sgd"
    momentum: float = 0.9  # sgd only
    beta1: float = 0.9  # adam only
    beta2: float = 0.999  # adam only
    eps: float = 1e-8  # adam only
    weight_decay: float = 0.0
    shuffle: bool = True  # a new sample order each epoch (seeded)
    device: str = "auto"  # "auto": cuda when torch sees a GPU, else cpu

    def __post_init__(self) -> None:
        _check_int("update", "epochs", self.epochs, minimum=1)
        _check_int("update", "batch_size", self.batch_size, minimum=1)
        _check_int("update", "seed", self.seed, minimum=0, maximum=_MAX_SEED)
        _check_int("update", "replay", self.replay, minimum=0)
        _check_choice("update", "optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("update", "device", self.device, DEVICES)
        if not isinstance(self.shuffle, bool):
            raise ModelError(f"[update] shuffle is {self.shuffle!r}; set it to true or false")
        self._number("learning_rate", 0.01, low=0.0, low_open=True)
        self._number("momentum", 0.9, low=0.0, high=1.0, high_open=True)
        self._number("beta1", 0.9, low=0.0, high=1.0, high_open=True)
        self._number("beta2", 0.999, low=0.0, high=1.0, high_open=True)
        self._number("eps", 1e-8, low=0.0, low_open=True)
        self._number("weight_decay", 0.0, low=0.0)

    def _number(
        self,
        name: str,
        example: float,
        *,
        low: float,
        high: float = math.inf,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        value = getattr(self, name)
        ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
        if ok:
            ok = (value > low if low_open else value >= low) and (
                value < high if high_open else value <= high
            )
        if not ok:
            raise ModelError(
                f"[update] {name} is {value!r}; set it to a number such as {example} "
                f"({'above' if low_open else 'from'} {low}"
                + (f", {'below' if high_open else 'up to'} {high})" if high != math.inf else ")")
            )
        # TOML writes 1 for 1.0; keep the stored type stable for manifests.
        object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> UpdateParams:
        return _from_dict(cls, d, "update")


@dataclass(frozen=True)
class ModelSpec:
    """How a model is built: a frozen backbone and an updatable head."""

    backbone: str = "vector"  # "vector" | "image" | "text" | "package.module:factory"
    task: str = "classify"  # "classify" (labels, cross-entropy) | "regress" (numbers, MSE)
    head: str = "knn"
    k: int = 5  # neighbours that vote in a k-NN head
    metric: str = "cosine"  # distance of a k-NN head
    weighting: str = "distance"  # k-NN vote: "distance" (inverse distance) or "uniform"
    max_per_label: int = 1000  # k-NN memory rows per label; beyond it a per-label reservoir
    max_memory: int = 10000  # regress k-NN: memory rows in all; beyond it one reservoir
    hidden: int = 64  # width of the mlp head's hidden layer
    auto_min_samples: int = 10  # auto head: train once every label has this many samples
    dim: int | None = None  # input size; None lets the first samples fix it
    image_size: int = 32  # image backbone: images are resized to image_size x image_size
    image_channels: int = 1  # image backbone: 1 (grayscale) or 3 (RGB)
    updatable: tuple[str, ...] = ()  # custom backbone: glob patterns of parameters to train

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not (
            self.backbone in BUILTIN_BACKBONES or _is_factory(self.backbone)
        ):
            raise ModelError(
                f"[model] backbone {self.backbone!r} is unknown; set it to one of "
                f"{', '.join(BUILTIN_BACKBONES)} or to 'package.module:factory'"
            )
        _check_choice("model", "task", self.task, TASKS)
        _check_choice("model", "head", self.head, HEADS)
        if self.task == "regress" and self.head == "auto":
            raise ModelError(
                '[model] head = "auto" switches by the samples each label has, and a regress '
                'model has no labels; with task = "regress" set head = "knn", "linear" or "mlp"'
            )
        _check_choice("model", "metric", self.metric, METRICS)
        _check_choice("model", "weighting", self.weighting, WEIGHTINGS)
        _check_int("model", "k", self.k, minimum=1)
        _check_int("model", "max_per_label", self.max_per_label, minimum=1)
        _check_int("model", "max_memory", self.max_memory, minimum=1)
        _check_int("model", "hidden", self.hidden, minimum=1)
        _check_int("model", "auto_min_samples", self.auto_min_samples, minimum=1)
        _check_int("model", "image_size", self.image_size, minimum=8, maximum=512)
        if self.image_channels not in (1, 3):
            raise ModelError(
                f"[model] image_channels is {self.image_channels!r}; set it to 1 (grayscale) "
                "or 3 (RGB)"
            )
        if self.dim is not None:
            _check_int("model", "dim", self.dim, minimum=1)
        patterns: object = self.updatable
        if isinstance(patterns, list):
            patterns = tuple(patterns)
        if not isinstance(patterns, tuple) or not all(isinstance(p, str) and p for p in patterns):
            raise ModelError(
                f'[model] updatable is {self.updatable!r}; set it to a list of globs: ["head.*"]'
            )
        if patterns and not self.is_custom:
            raise ModelError(
                "[model] updatable applies to a package.module:factory backbone only; "
                "remove it, or name your own torch module as the backbone"
            )
        if patterns and self.head not in ("linear", "mlp"):
            raise ModelError(
                "[model] updatable trains the backbone with the head, which needs a trained "
                'head: set head = "linear" or "mlp", or remove updatable'
            )
        object.__setattr__(self, "updatable", tuple(patterns))

    @property
    def is_custom(self) -> bool:
        return self.backbone not in BUILTIN_BACKBONES

    @property
    def input_kind(self) -> str:
        """What a sample's stored payload is: "vector" (float32), "text" or "image" bytes.

        A custom backbone takes vectors: its module gets float32 rows of ``dim`` values.
        """
        return self.backbone if self.backbone in ("image", "text") else "vector"

    @property
    def regress(self) -> bool:
        """Numeric targets (MSE) rather than labels (cross-entropy)."""
        return self.task == "regress"

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["updatable"] = list(self.updatable)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ModelSpec:
        return _from_dict(cls, d, "model")


def _is_factory(name: str) -> bool:
    module, _, attr = name.partition(":")
    return bool(
        module
        and attr
        and all(part.isidentifier() for part in module.split("."))
        and attr.isidentifier()
    )


def _from_dict(cls: type[_T], d: Mapping[str, object], section: str) -> _T:
    known = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in d:
        if key not in known:
            raise ModelError(
                f"[{section}] has an unknown key {key!r}; "
                f"remove it or use one of {', '.join(sorted(known))}"
            )
    kwargs: dict[str, Any] = dict(d)
    return cls(**kwargs)


def _check_int(
    section: str, name: str, value: object, *, minimum: int, maximum: int | None = None
) -> None:
    # Values come from TOML and JSON, where k = "5" or epochs = true is an easy slip.
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ModelError(f"[{section}] {name} is {value!r}; set it to an integer {bounds}")


def _check_choice(section: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ModelError(
            f"[{section}] {name} {value!r} is unknown; set it to one of {', '.join(choices)}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
