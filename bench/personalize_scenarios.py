"""The style-shift and stream scenarios of bench/personalize.py, each through a real daemon.

- ``style``: a base of 40 standard digits per class (all ten) is learned in one update; then,
  in a copy of that data folder per seed, 5 shots per class of a user whose digits are
  transformed (``rot90`` by default) are dropped into the inbox. Accuracy on the user's
  held-out digits and on standard held-out digits, before the shots and after, beside
  scikit-learn's k-NN (k = 1, 3, 5) and logistic regression fitted on the same samples.
- ``stream``: progressive validation (river's ``progressive_val_score`` with a delay) on a
  small numeric dataset: every sample is predicted first; labels arrive 50 samples later, in
  batches of 50, and each batch is one update through the inbox. Beside it, a standardized
  scikit-learn k-NN (k = 5) refitted on exactly the samples whose labels have arrived.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tailord.daemon.ctl.client import ClientError
from tests.conftest import DaemonProcess, npy_bytes, wait_for

Array = npt.NDArray[np.float32]
WARM = "[worker]\nprewarm = true\n"


def _image(x: Array) -> Array:
    return x.reshape(-1, 8, 8)


def _flat(x: npt.NDArray[np.generic]) -> Array:
    return np.ascontiguousarray(x.reshape(len(x), 64), dtype=np.float32)


def _thick(x: Array) -> Array:
    # a thicker pen: each pixel the brightest of itself and its right and lower neighbours
    img = _image(x)
    right = np.pad(img, ((0, 0), (0, 0), (1, 0)))[:, :, :8]
    down = np.pad(img, ((0, 0), (1, 0), (0, 0)))[:, :8, :]
    return _flat(np.maximum(img, np.maximum(right, down)))


TRANSFORMS: dict[str, Callable[[Array], Array]] = {
    "rot90": lambda x: _flat(np.rot90(_image(x), 1, axes=(1, 2))),
    "shift": lambda x: _flat(np.roll(_image(x), 2, axis=2)),
    "thick": _thick,
}
DATASETS = {"wine": load_wine, "breast_cancer": load_breast_cancer}


def drop_all(daemon: DaemonProcess, x: Array, labels: list[str], prefix: str) -> None:
    for i, (row, label) in enumerate(zip(x, labels, strict=True)):
        daemon.drop(label, f"{prefix}{i}.npy", npy_bytes(row.astype(np.float32)))


def finished_updates(
    daemon: DaemonProcess, states: str = "'succeeded', 'rejected', 'failed'"
) -> int:
    con = sqlite3.connect(daemon.data_dir / "tailord.db")
    try:
        row = con.execute(f"SELECT count(*) FROM updates WHERE state IN ({states})").fetchone()
        return int(row[0])
    finally:
        con.close()


def predict(daemon: DaemonProcess, x: Array) -> list[str]:
    for _ in range(50):  # right after start-up the socket may refuse for a moment
        try:
            with daemon.client() as client:
                answer = client.predict([row.tolist() for row in x])
            return [str(p.label) for p in answer.predictions]
        except ClientError:
            wait_for(lambda: True, timeout=1)
    raise RuntimeError("the daemon did not answer predictions; read its log")


def _acc(truth: npt.NDArray[np.generic], predicted: list[str]) -> float:
    return float(np.mean([str(t) == p for t, p in zip(truth, predicted, strict=True)]))


def _peers(
    x: Array, y: npt.NDArray[np.generic], tests: dict[str, Array], truth: npt.NDArray[np.generic]
) -> dict[str, float]:
    out: dict[str, float] = {}
    models = {f"sk_knn{k}": KNeighborsClassifier(n_neighbors=k) for k in (1, 3, 5)}
    models["sk_logreg"] = LogisticRegression(max_iter=5000)
    for name, model in models.items():
        model.fit(x, y)
        for part, q in tests.items():
            out[f"{name}_{part}"] = _acc(truth, [str(v) for v in model.predict(q)])
    return out


def style(
    head_config: str, root: Path, seeds: int, transform: str, per_class: int = 40, shots: int = 5
) -> dict[str, float]:
    """The style-shift scenario for one head; mean figures over ``seeds``."""
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    shift = TRANSFORMS[transform]
    rng = np.random.default_rng(0)
    base = [int(i) for c in range(10) for i in rng.permutation(np.flatnonzero(y == c))[:per_class]]
    taken = set(base)
    pools = {c: [int(i) for i in np.flatnonzero(y == c) if i not in taken] for c in range(10)}
    config = root / "style.toml"
    config.write_text(head_config + WARM + f"[policy]\nmin_queued = {len(base)}\n")
    first = DaemonProcess(root / "style-base")
    drop_all(first, x[base], [str(v) for v in y[base]], "b")
    first.start("--config", str(config))
    wait_for(lambda: finished_updates(first) >= 1, timeout=300)
    every = [i for c in range(10) for i in pools[c]]
    before_user = _acc(y[every], predict(first, shift(x[every])))
    before_std = _acc(y[every], predict(first, x[every]))
    first.stop()
    config.write_text(head_config + WARM + f"[policy]\nmin_queued = {shots * 10}\n")
    rows: list[dict[str, float]] = []
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        chosen = [int(i) for c in range(10) for i in rng.choice(pools[c], shots, replace=False)]
        test = [i for i in every if i not in set(chosen)]
        copy = DaemonProcess(root / f"style-{seed}")
        shutil.copytree(first.data_dir, copy.data_dir, symlinks=True)
        drop_all(copy, shift(x[chosen]), [str(v) for v in y[chosen]], "u")
        copy.start("--config", str(config))
        wait_for(lambda c=copy: finished_updates(c) >= 2, timeout=300)
        user, standard = shift(x[test]), x[test]
        row = {
            "user": _acc(y[test], predict(copy, user)),
            "std": _acc(y[test], predict(copy, standard)),
        }
        copy.stop(signal.SIGTERM)
        train_x = np.concatenate([x[base], shift(x[chosen])])
        train_y = np.concatenate([y[base], y[chosen]])
        row.update(_peers(train_x, train_y, {"user": user, "std": standard}, y[test]))
        rows.append(row)
    out = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    out.update({"before_user": before_user, "before_std": before_std})
    return out


def stream(
    head_config: str, root: Path, seeds: int, dataset: str, batch: int = 50, delay: int = 50
) -> dict[str, float]:
    """Progressive validation for one head; accuracy over the samples predicted once some
    labels had arrived (as river skips a model that cannot predict yet), mean over seeds."""
    data = DATASETS[dataset]()
    ours, peer, rejected = [], [], 0
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(data.target))
        x, y = data.data[order].astype(np.float32), data.target[order]
        config = root / "stream.toml"
        config.write_text(head_config + WARM + f"[policy]\nmin_queued = {batch}\n")
        daemon = DaemonProcess(root / f"stream-{seed}")
        daemon.root.mkdir()
        daemon.start("--config", str(config))
        arrived, hits, peer_hits = 0, [], []
        # Releases happen before sample i = delay + batch * (b + 1): batch b's last label has
        # then waited ``delay`` samples. Between two releases the model does not change, so
        # the samples in between are predicted in one call.
        releases = list(range(delay + batch, len(y), batch))
        for start, end in zip([0, *releases], [*releases, len(y)], strict=True):
            if start in releases:
                drop_all(
                    daemon,
                    x[arrived : arrived + batch],
                    [str(v) for v in y[arrived : arrived + batch]],
                    f"s{arrived}-",
                )
                arrived += batch
                done = releases.index(start) + 1
                wait_for(lambda d=daemon, n=done: finished_updates(d) >= n, timeout=300)
            if not arrived:
                continue
            answers = predict(daemon, x[start:end])
            hits += [str(t) == p for t, p in zip(y[start:end], answers, strict=True)]
            knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(5, arrived)))
            knn.fit(x[:arrived], y[:arrived])
            peer_hits += [bool(v) for v in knn.predict(x[start:end]) == y[start:end]]
        rejected += finished_updates(daemon, "'rejected'")
        daemon.stop()
        ours.append(float(np.mean(hits)))
        peer.append(float(np.mean(peer_hits)))
    return {
        "stream": float(np.mean(ours)),
        "sk_std_knn5": float(np.mean(peer)),
        "rejected": float(rejected),
    }


def split_updates(
    head_config: str, root: Path, transform: str, per_class: int = 40, shots: int = 5
) -> dict[str, float]:
    """The style scenario's samples (base, then the user's shots) learned in 1, 2 and 5
    updates by fresh daemons: accuracy on the user's and on standard held-out digits each."""
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    shift = TRANSFORMS[transform]
    rng = np.random.default_rng(0)
    base = [int(i) for c in range(10) for i in rng.permutation(np.flatnonzero(y == c))[:per_class]]
    rest = [i for i in range(len(y)) if i not in set(base)]
    user = [int(i) for c in range(10) for i in [j for j in rest if y[j] == c][:shots]]
    test = [i for i in rest if i not in set(user)]
    rows = np.concatenate([x[base], shift(x[user])])
    labels = [str(v) for v in np.concatenate([y[base], y[user]])]
    out: dict[str, float] = {}
    for parts in (1, 2, 5):
        size = -(-len(rows) // parts)
        config = root / f"split-{parts}.toml"
        config.write_text(head_config + WARM + f"[policy]\nmin_queued = {size}\n")
        daemon = DaemonProcess(root / f"split-{parts}")
        daemon.root.mkdir()
        daemon.start("--config", str(config))
        for part in range(parts):
            chunk = slice(part * size, (part + 1) * size)
            drop_all(daemon, rows[chunk], labels[chunk], f"p{part}-")
            wait_for(lambda d=daemon, n=part + 1: finished_updates(d) >= n, timeout=300)
        out[f"user_{parts}"] = _acc(y[test], predict(daemon, shift(x[test])))
        out[f"std_{parts}"] = _acc(y[test], predict(daemon, x[test]))
        daemon.stop()
    return out
