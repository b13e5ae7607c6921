"""A k-NN update on numpy: rows appended to a vector model's memory, within its bounds.

What :meth:`KnnHead.appended` and :meth:`KnnRegressor.appended` do with torch, done on the
:class:`~tailord.trainer.light.LightModel`'s arrays, so that the daemon learns a k-NN
update itself, in milliseconds, without a worker process or torch. The file it gives is the
same kind of file (the same tensors, metadata and checks); past ``max_per_label`` (classify)
or ``max_memory`` (regress) rows it keeps Vitter's reservoir (algorithm R) as the torch heads
do, drawn from numpy's seeded generator (so the same input gives the same memory, though not
the rows torch's generator would have picked). No torch here: an import-linter contract
keeps it so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tailord.trainer.errors import ModelError
from tailord.trainer.light import LightModel
from tailord.trainer.targets import target_value
from tailord.trainer.vote import fit_space, metric_code

Rows = npt.NDArray[np.float32]


def knn_learns_light(model: LightModel) -> bool:
    """Whether an update of ``model`` is a row append this module does (a k-NN head)."""
    return model.spec.head == "knn"


def appended(model: LightModel, x: Rows, names: Sequence[str], seed: int = 0) -> LightModel:
    """A new model with rows ``x`` learned under ``names`` (labels, or a regress target's text)."""
    if not knn_learns_light(model):
        raise ModelError(f"a {model.spec.head} head is trained, not appended to; use run_update")
    rows = np.array(x, dtype=np.float32, order="C")
    if rows.ndim != 2 or len(rows) != len(names) or len(rows) == 0:
        raise ModelError(
            f"the update got {rows.shape} rows for {len(names)} labels; pass one label per row"
        )
    if not np.isfinite(rows).all():
        raise ModelError("the new samples hold NaN or inf; decode them with decode_vector first")
    dim = rows.shape[1] if model.dim is None else model.dim  # the first samples fix it
    if rows.shape[1] != dim:
        raise ModelError(
            f"the new samples have {rows.shape[1]} values each, but the model expects {dim}; "
            f"drop vectors of {dim} values, or start a new model for size {rows.shape[1]}"
        )
    arrays = model.arrays
    memory = arrays["knn.memory"].astype(np.float32).reshape(-1, dim)
    # A sample has one row: learned again (relabelled, say), its old row goes. Over the
    # vector backbone a row is the sample's own float32 payload, so equal bytes, same sample.
    replaced = _rows_of(memory, rows)
    if model.spec.regress:
        values = np.array([target_value(name) for name in names], dtype=np.float32)
        old = arrays["knn.values"].astype(np.float32)[~replaced]
        memory = memory[~replaced]
        seen = arrays["knn.seen"].astype(np.int64)  # shape [1]: one reservoir over all rows
        rng = np.random.default_rng(seed + int(seen[0]))
        keys = np.zeros(len(rows), dtype=np.int64)
        out_x, out_y = _reservoir(
            memory,
            old,
            np.zeros(len(old), np.int64),
            rows,
            values,
            keys,
            model.spec.max_memory,
            seen,
            rng,
        )
        new: dict[str, npt.NDArray[np.generic]] = {
            "knn.memory": out_x,
            "knn.values": out_y.astype(np.float32),
            "knn.seen": seen,
        }
        return LightModel(model.spec, (), dim, len(out_x), new)
    labels = _extend(model.labels, names)
    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index[name] for name in names], dtype=np.int64)
    old_targets = arrays["knn.targets"].astype(np.int64)
    if "knn.seen" in arrays:
        before = arrays["knn.seen"].astype(np.int64)
    else:  # files before the counts were kept: each row was offered once
        before = np.bincount(old_targets, minlength=len(labels)).astype(np.int64)
    old_targets, memory = old_targets[~replaced], memory[~replaced]
    seen = np.zeros(len(labels), dtype=np.int64)
    seen[: len(before)] = before[: len(labels)]
    rng = np.random.default_rng(seed + int(seen.sum()))
    # One reservoir per label: a full label does not push another label's rows out.
    out_x, out_y = _reservoir(
        memory,
        old_targets,
        old_targets,
        rows,
        targets,
        targets,
        model.spec.max_per_label,
        seen,
        rng,
    )
    out_targets = out_y.astype(np.int64)
    # The same numpy function decides for the torch heads (KnnHead.appended).
    space = fit_space(
        out_x, out_targets, model.spec.k, model.spec.metric, model.spec.weighting, seed
    )
    grown: dict[str, npt.NDArray[np.generic]] = {
        "knn.memory": out_x,
        "knn.targets": out_targets,
        "knn.seen": seen,
        "knn.center": space.center,
        "knn.scale": space.scale,
        "knn.metric": metric_code(space.metric),
        "knn.balance": np.array([int(space.balance)], dtype=np.int64),
    }
    return LightModel(model.spec, labels, dim, len(out_x), grown)


def _reservoir(
    memory: Rows,
    targets: npt.NDArray[np.generic],
    old_keys: npt.NDArray[np.int64],
    x: Rows,
    y: npt.NDArray[np.generic],
    keys: npt.NDArray[np.int64],
    cap: int | None,
    seen: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> tuple[Rows, npt.NDArray[np.generic]]:
    """Algorithm R per key (``seen`` counts each key's offers, updated in place): the i-th
    row ever offered for a full key replaces a random one of its rows with probability cap / i.
    Rows stay in arrival order and an evicted row's slot is reused, as the torch heads do."""
    out_x = np.concatenate([memory, x])
    out_y = np.concatenate([targets, y])
    if cap is None or not len(x):
        np.add.at(seen, keys, 1)
        return np.ascontiguousarray(out_x), out_y
    slots: dict[int, list[int]] = {}
    for i, key in enumerate(old_keys.tolist()):
        slots.setdefault(key, []).append(i)
    n = len(memory)
    for row, target, key in zip(x, y, keys.tolist(), strict=True):
        seen[key] += 1
        mine = slots.setdefault(key, [])
        if len(mine) < cap:
            mine.append(n)
            out_x[n], out_y[n] = row, target
            n += 1
            continue
        j = int(rng.integers(int(seen[key])))
        if j < cap:
            out_x[mine[j]], out_y[mine[j]] = row, target
    return np.ascontiguousarray(out_x[:n]), out_y[:n]


def _rows_of(memory: Rows, rows: Rows) -> npt.NDArray[np.bool_]:
    """Which memory rows are, byte for byte, one of ``rows``."""
    if not len(memory):
        return np.zeros(0, dtype=bool)
    incoming = {row.tobytes() for row in rows}
    return np.fromiter((row.tobytes() in incoming for row in memory), bool, len(memory))


def _extend(labels: tuple[str, ...], names: Sequence[str]) -> tuple[str, ...]:
    # Appending only: an old index keeps meaning the same label in every later version.
    known = set(labels)
    return labels + tuple(name for name in dict.fromkeys(names) if name not in known)
