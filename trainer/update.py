"""One update: learn the queued samples (plus replay) and return a new Model.

The recipe has fixed phases: check the inputs, extend the labels, then append (k-NN), grow
and train (linear, mlp), or both (auto). A regress model's "labels" are its targets' text
(see targets.py): it has no labels to extend, and its heads learn the numbers. Training
checkpoints at each epoch end and at a stop when given a folder, and a run with the same
inputs resumes from there (fit.py). The input Model is never touched, so it keeps serving
meanwhile.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from tailord.trainer.auto import layer_predict, linear_wins
from tailord.trainer.errors import ModelError, UpdateCancelled
from tailord.trainer.fit import Emit, ProgressEvent, Trainer, rate, resolve_device
from tailord.trainer.heads import AutoHead, LinearHead, MlpHead
from tailord.trainer.knn_classify import KnnHead
from tailord.trainer.knn_regress import KnnRegressor
from tailord.trainer.model import HeadType, Model
from tailord.trainer.spec import UpdateParams
from tailord.trainer.targets import target_value

__all__ = ["ProgressEvent", "resolve_device", "run_update"]

logger = logging.getLogger(__name__)

Rows = npt.NDArray[np.float32]
_Memory = TypeVar("_Memory", KnnHead, KnnRegressor)


def warm_up() -> None:
    """Pay now what the first update would pay: torch imports ``torch._dynamo`` (and sympy)
    when the first optimizer is built, about 2 s here, and the autograd engine and each
    optimizer's step start up on first use. A prewarmed worker calls this while it waits
    for its job, so an update's time is its own work."""
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)
    for optimizer in (
        torch.optim.SGD(net.parameters(), lr=0.1),
        torch.optim.Adam(net.parameters()),
    ):
        loss = nn.functional.cross_entropy(net(x), y) + nn.functional.mse_loss(net(x), x[:, :2])
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()


def run_update(
    model: Model,
    new_x: npt.NDArray[np.generic],
    new_labels: Sequence[str],
    replay_x: npt.NDArray[np.generic],
    replay_labels: Sequence[str],
    params: UpdateParams,
    on_progress: Emit | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    checkpoint_dir: Path | None = None,
) -> Model:
    """Learn ``new_x`` (shape (n, dim)) with ``new_labels``; return the candidate Model.

    For a regress model the labels are the targets' text (``"3.25"``); a label that is not a
    finite number raises ModelError.

    Rows are head inputs: the backbone's features, or raw vectors for a custom backbone
    with updatable parameters (it is trained with the head). ``replay_x`` holds earlier
    learned samples the caller picked (shape (0, dim) for none); trained heads train on
    them too, at most ``params.replay`` of them. ``should_stop`` is asked before every
    batch; when it answers True, the trainer checkpoints there (given ``checkpoint_dir``)
    and UpdateCancelled is raised.
    """
    joint = model.trains_backbone
    new = _rows(new_x, new_labels, "new samples")
    if len(new) == 0:
        raise ModelError("the update got no new samples; queue samples before starting one")
    in_dim = new.shape[1] if joint else _fix_dim(model, new.shape[1])
    replay = _rows(replay_x, replay_labels, "replay samples", in_dim)
    emit = on_progress or _ignore
    stop = should_stop or _never
    head = model.head
    backbone_state = model.backbone_state
    labels: tuple[str, ...] = ()
    if isinstance(head, KnnRegressor):
        # Like a classify memory: it holds (a reservoir of) every earlier sample already.
        new_head: HeadType = _append(head, new, _values(new_labels), params, emit, stop)
        dim: int | None = in_dim
        replayed = 0
    elif isinstance(head, KnnHead):
        labels = _extend(model.labels, new_labels)
        new_head = _append(head, new, _targets(new_labels, labels), params, emit, stop)
        dim, replayed = in_dim, 0
    elif isinstance(head, AutoHead):
        labels = _extend(model.labels, new_labels)
        new_head = _auto(
            model,
            head,
            new,
            _targets(new_labels, labels),
            labels,
            params,
            emit,
            stop,
            checkpoint_dir,
        )
        dim, replayed = in_dim, 0
    else:
        replay, replay_labels = _cap_replay(replay, replay_labels, params)
        names = [*new_labels, *replay_labels]
        if model.spec.regress:
            targets = _values(names)
        else:
            labels = _extend(_extend(model.labels, new_labels), replay_labels)
            targets = _targets(names, labels)
        x = np.concatenate([new, replay])
        trainer = Trainer(model, head, joint, labels, in_dim, params, emit, stop)
        fitted, backbone_state = trainer.fit(x, targets, checkpoint_dir)
        assert isinstance(fitted, LinearHead | MlpHead)
        fitted.trained = head.trained + len(new)
        new_head, dim, replayed = fitted, trainer.feature_dim, len(replay)
    logger.info(
        "update learned %d new samples (%d replayed); labels %d -> %d",
        len(new),
        replayed,
        len(model.labels),
        len(labels),
    )
    return Model(model.spec, labels, dim, new_head, backbone_state=backbone_state)


def _auto(
    model: Model,
    head: AutoHead,
    new: Rows,
    targets: torch.Tensor,
    labels: tuple[str, ...],
    params: UpdateParams,
    emit: Emit,
    stop: Callable[[], bool],
    folder: Path | None,
) -> AutoHead:
    """Append to the memory; keep a linear layer only if it beats the k-NN (auto.py)."""
    knn = _append(head.knn, new, targets, params, _ignore, stop)
    n_labels, dim = len(labels), new.shape[1]

    def fit(
        x: Rows, y: torch.Tensor, where: Path | None, report: Emit = _ignore, steps_of: int = 0
    ) -> LinearHead:
        # From a fresh seeded start each time: the result must not depend on earlier updates.
        # A fold's layer takes as many optimizer steps as the whole memory's would (more
        # epochs over fewer rows): with the same epochs it would be judged undertrained.
        epochs = max(params.epochs, math.ceil(params.epochs * steps_of / max(1, len(x))))
        fold_params = msgspec.structs.replace(params, epochs=epochs)
        trainer = Trainer(model, LinearHead(None, 0), False, labels, dim, fold_params, report, stop)
        trained, _ = trainer.fit(x, y, where)
        assert isinstance(trained, LinearHead)
        return LinearHead(trained.layer, len(x))

    def fit_predict(x: Rows, y: torch.Tensor, query: Rows) -> npt.NDArray[np.int64]:
        return layer_predict(fit(x, y, None, steps_of=len(knn.memory)), query, n_labels)

    if linear_wins(knn, n_labels, fit_predict, params.seed):
        linear = fit(knn.memory.numpy(), knn.targets, folder, emit)
    else:
        linear = LinearHead(None, 0)  # the k-NN answers (AutoHead.active)
        emit(ProgressEvent("began", 0, 0, None, None))
        emit(ProgressEvent("epoch", 1, 1, None, None))
    return AutoHead(knn, linear, head.min_samples)


def _append(
    head: _Memory,
    x: Rows,
    targets: torch.Tensor,
    params: UpdateParams,
    emit: Emit,
    stop: Callable[[], bool],
) -> _Memory:
    emit(ProgressEvent("began", 0, 0, None, None))
    started = time.perf_counter()
    if stop():
        raise UpdateCancelled("the update was cancelled before it began; nothing changed")
    grown = head.appended(torch.from_numpy(x), targets, seed=params.seed)
    emit(ProgressEvent("epoch", 1, 1, None, rate(len(x), started)))
    return grown


def _rows(
    x: npt.NDArray[np.generic], names: Sequence[str], what: str, dim: int | None = None
) -> Rows:
    # A copy, so that the caller changing its array later cannot change the model.
    rows = np.array(x, dtype=np.float32, order="C")
    if rows.size == 0 and dim is not None:
        rows = rows.reshape(0, dim)
    if rows.ndim != 2:
        raise ModelError(f"the {what} have shape {rows.shape}; pass an array of shape (n, dim)")
    if not all(isinstance(name, str) and name for name in names):
        raise ModelError(f"a label of the {what} is empty or not a string; name every label")
    if len(names) != len(rows):
        raise ModelError(
            f"there are {len(rows)} {what} but {len(names)} labels; pass one label per row"
        )
    if dim is not None and rows.shape[1] != dim:
        raise ModelError(
            f"the {what} have {rows.shape[1]} values each, the model expects {dim}; "
            "pick samples learned by this model"
        )
    if not np.isfinite(rows).all():
        raise ModelError(f"the {what} hold NaN or inf; decode them with decode_vector first")
    return rows


def _fix_dim(model: Model, got: int) -> int:
    if model.dim is None:
        return got  # the first samples fix the input size
    if got != model.dim:
        raise ModelError(
            f"the new samples have {got} values each, but the model expects {model.dim}; "
            f"drop vectors of {model.dim} values, or start a new model for size {got}"
        )
    return model.dim


def _extend(labels: tuple[str, ...], names: Sequence[str]) -> tuple[str, ...]:
    # Appending only: an old index keeps meaning the same label in every later version.
    known = set(labels)
    added = [name for name in dict.fromkeys(names) if name not in known]
    return labels + tuple(added)


def _cap_replay(
    replay: Rows, names: Sequence[str], params: UpdateParams
) -> tuple[Rows, Sequence[str]]:
    if len(replay) <= params.replay:
        return replay, names
    generator = torch.Generator().manual_seed(params.seed)
    keep = torch.randperm(len(replay), generator=generator)[: params.replay].sort().values
    chosen = keep.tolist()
    return replay[chosen], [names[i] for i in chosen]


def _targets(names: Sequence[str], labels: tuple[str, ...]) -> torch.Tensor:
    index = {label: i for i, label in enumerate(labels)}
    return torch.tensor([index[name] for name in names], dtype=torch.int64)


def _values(names: Sequence[str]) -> torch.Tensor:
    return torch.tensor([target_value(name) for name in names], dtype=torch.float32)


def _ignore(event: ProgressEvent) -> None:
    return None


def _never() -> bool:
    return False
