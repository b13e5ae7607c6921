"""One update: learn the queued samples (plus replay) and return a new Model.

The recipe has fixed phases: check the inputs, extend the labels, then append (k-NN) or
grow and train (linear). The input Model is never touched, so it keeps serving meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from tailord.trainer.errors import ModelError, UpdateCancelled
from tailord.trainer.heads import KnnHead, LinearHead
from tailord.trainer.model import Model
from tailord.trainer.spec import UpdateParams

logger = logging.getLogger(__name__)

Rows = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # "began" | "batch" | "epoch"
    epoch: int  # 1-based; 0 for "began"
    batch: int  # 1-based within the epoch; for "epoch", the number of batches it had
    loss: float | None  # batch loss, or the epoch's mean loss per sample; None for k-NN
    samples_per_second: float | None  # since "began"


def run_update(
    model: Model,
    new_x: npt.NDArray[np.generic],
    new_labels: Sequence[str],
    replay_x: npt.NDArray[np.generic],
    replay_labels: Sequence[str],
    params: UpdateParams,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Model:
    """Learn ``new_x`` (shape (n, dim)) with ``new_labels``; return the candidate Model.

    ``replay_x`` holds earlier learned samples the caller picked (shape (0, dim) for none);
    linear heads train on them too, at most ``params.replay`` of them. ``should_stop`` is
    asked before every batch; when it answers True, UpdateCancelled is raised.
    """
    new = _rows(new_x, new_labels, "new samples")
    if len(new) == 0:
        raise ModelError("the update got no new samples; queue samples before starting one")
    dim = _fix_dim(model, new.shape[1])
    replay = _rows(replay_x, replay_labels, "replay samples", dim)
    emit = on_progress or _ignore
    stop = should_stop or _never
    if isinstance(model.head, KnnHead):
        # The memory already holds every earlier sample, so replay adds nothing.
        labels = _extend(model.labels, new_labels)
        head: KnnHead | LinearHead = _append(
            model.head, x=new, names=new_labels, labels=labels, emit=emit, stop=stop
        )
    else:
        replay, replay_labels = _cap_replay(replay, replay_labels, params)
        labels = _extend(_extend(model.labels, new_labels), replay_labels)
        x = np.concatenate([new, replay])
        y = [*new_labels, *replay_labels]
        head = _train(
            model.head,
            x=x,
            names=y,
            n_new=len(new),
            labels=labels,
            dim=dim,
            params=params,
            emit=emit,
            stop=stop,
        )
    logger.info(
        "update learned %d new samples (%d replayed); labels %d -> %d",
        len(new),
        len(replay) if isinstance(head, LinearHead) else 0,
        len(model.labels),
        len(labels),
    )
    return Model(model.spec, labels, dim, head)


def _append(
    head: KnnHead,
    *,
    x: Rows,
    names: Sequence[str],
    labels: tuple[str, ...],
    emit: Callable[[ProgressEvent], None],
    stop: Callable[[], bool],
) -> KnnHead:
    emit(ProgressEvent("began", 0, 0, None, None))
    started = time.perf_counter()
    if stop():
        raise UpdateCancelled("the update was cancelled before it began; nothing changed")
    grown = head.appended(torch.from_numpy(x), _targets(names, labels))
    emit(ProgressEvent("epoch", 1, 1, None, _rate(len(x), started)))
    return grown


def _train(
    head: LinearHead,
    *,
    x: Rows,
    names: Sequence[str],
    n_new: int,
    labels: tuple[str, ...],
    dim: int,
    params: UpdateParams,
    emit: Callable[[ProgressEvent], None],
    stop: Callable[[], bool],
) -> LinearHead:
    # A caller inside no_grad or inference_mode must still get a trained layer.
    with torch.inference_mode(False), torch.enable_grad():
        # fork_rng: the seeded init must not disturb anyone else's global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params.seed)
            layer = head.grown(dim, len(labels))
        generator = torch.Generator().manual_seed(params.seed)
        optimizer = torch.optim.Adam(layer.parameters(), lr=params.learning_rate)
        inputs, targets = torch.from_numpy(x), _targets(names, labels)
        n = len(inputs)
        emit(ProgressEvent("began", 0, 0, None, None))
        started, seen = time.perf_counter(), 0
        for epoch in range(1, params.epochs + 1):
            order = torch.randperm(n, generator=generator)
            total, batch = 0.0, 0
            for begin in range(0, n, params.batch_size):
                batch += 1
                if stop():
                    raise UpdateCancelled(
                        f"the update was cancelled at epoch {epoch}, batch {batch}; "
                        "the current version is unchanged"
                    )
                pick = order[begin : begin + params.batch_size]
                loss = nn.functional.cross_entropy(layer(inputs[pick]), targets[pick])
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                value = float(loss.item())
                total += value * len(pick)
                seen += len(pick)
                emit(ProgressEvent("batch", epoch, batch, value, _rate(seen, started)))
            emit(ProgressEvent("epoch", epoch, batch, total / n, _rate(seen, started)))
            logger.debug("epoch %d/%d: mean loss %.6f", epoch, params.epochs, total / n)
    return LinearHead(layer, head.trained + n_new)


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


def _rate(samples: int, started: float) -> float | None:
    elapsed = time.perf_counter() - started
    return samples / elapsed if elapsed > 0 else None


def _ignore(event: ProgressEvent) -> None:
    return None


def _never() -> bool:
    return False
