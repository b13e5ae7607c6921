"""What an update is and was, as typed structs: its progress, metrics, gate figures, summary.

These cross boundaries: the worker sends them over its pipe (messages.py), the updater stores
them in the update's row and the version's manifest, the event bus and the API send them to
clients. The module imports neither torch nor SQLAlchemy, so ``tailorctl`` may decode them.

Field order is wire order: encoded, each struct gives the same JSON object (keys and order)
that the dicts they replace gave.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from tailord.storage.states import UpdateState

ProgressKind = Literal["began", "batch", "epoch"]


class TrainingProgress(msgspec.Struct, frozen=True):
    """One progress event of the trainer (``tailord.trainer.fit.ProgressEvent``)."""

    kind: ProgressKind
    epoch: int  # 1-based; for "began", the epochs already done (resumed from a checkpoint)
    batch: int  # 1-based within the epoch; for "epoch", the number of batches it had
    loss: float | None  # batch loss, or the epoch's mean loss per sample; None for k-NN
    samples_per_second: float | None  # since "began"
    accuracy: float | None = None  # "epoch" only, and only for classify heads


class CurvePoint(msgspec.Struct, frozen=True):
    """One epoch of the loss curve (``tailorctl update --show`` plots it)."""

    epoch: int
    loss: float | None
    accuracy: float | None


class UpdateMetrics(msgspec.Struct, frozen=True, omit_defaults=True):
    """Figures of one update, in its row and its version's manifest.

    Every field is optional because a version that no update made (the base, an import) has
    none: it encodes as ``{}``, as its manifest always said.
    """

    seconds: float | None = None  # training time
    encode_seconds: float | None = None  # backbone features (cache misses) time
    replayed: int | None = None  # earlier samples mixed in
    curve: list[CurvePoint] | None = None  # one point per epoch; [] for a k-NN head


class GateFigures(msgspec.Struct, frozen=True):
    """The gate's decision and the figures it decided on (``trainer.gate.GateResult``)."""

    promote: bool
    reason: str
    holdout_samples: int
    holdout_candidate: float | None
    holdout_current: float | None
    canary_samples: int
    canary_candidate: float | None
    canary_current: float | None
    metric: Literal["accuracy", "mse"] = "accuracy"  # what the four figures measure
    enabled: bool = True  # false: every candidate is promoted, whatever the figures


class UpdateInfo(msgspec.Struct, frozen=True):
    """One update as ``/v1/updates/{id}``, ``/v1/update`` and ``/v1/status`` describe it."""

    id: int
    state: UpdateState
    reason: str
    started_at: float
    finished_at: float | None
    base_version: int
    version: int | None  # the version it published
    samples: int  # new samples it learned (0 until it ends)
    error: str | None
    metrics: UpdateMetrics
    gate: GateFigures | None
    progress: TrainingProgress | None  # the latest event, while it runs

    @property
    def active(self) -> bool:
        """Pending or running: not ended yet."""
        return self.state.active
