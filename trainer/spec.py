"""What a model is built from (ModelSpec) and how an update trains it (UpdateParams).

Both are frozen, validated on construction, and round-trip through plain dicts so that the
daemon can read them from TOML and store them in a manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tailord.trainer.errors import ModelError

BACKBONES = ("vector",)
HEADS = ("knn", "linear")
METRICS = ("cosine", "euclidean")

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

    def __post_init__(self) -> None:
        _check_int("update", "epochs", self.epochs, minimum=1)
        _check_int("update", "batch_size", self.batch_size, minimum=1)
        _check_int("update", "seed", self.seed, minimum=0, maximum=_MAX_SEED)
        _check_int("update", "replay", self.replay, minimum=0)
        rate = self.learning_rate
        if not (_is_int(rate) or isinstance(rate, float)) or not 0 < rate < float("inf"):
            raise ModelError(
                f"[update] learning_rate is {rate!r}; set it to a positive number such as 0.01"
            )
        # TOML writes 1 for 1.0; keep the stored type stable for manifests.
        object.__setattr__(self, "learning_rate", float(rate))

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> UpdateParams:
        return _from_dict(cls, d, "update")


@dataclass(frozen=True)
class ModelSpec:
    """How a model is built: a frozen backbone and an updatable head."""

    backbone: str = "vector"
    head: str = "knn"
    k: int = 5  # neighbours that vote in a k-NN head
    metric: str = "cosine"  # distance of a k-NN head
    dim: int | None = None  # input size; None lets the first samples fix it

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ModelError(
                f'[model] backbone {self.backbone!r} is unknown; set backbone = "vector": '
                "only 'vector' is available in this version"
            )
        _check_choice("head", self.head, HEADS)
        _check_choice("metric", self.metric, METRICS)
        _check_int("model", "k", self.k, minimum=1)
        if self.dim is not None:
            _check_int("model", "dim", self.dim, minimum=1)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ModelSpec:
        return _from_dict(cls, d, "model")


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


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ModelError(
            f"[model] {name} {value!r} is unknown; set it to one of {', '.join(choices)}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
