"""Bench: few-shot personalization on scikit-learn's bundled digits, through a real daemon.

For each head (knn, linear, auto): a daemon learns a base model from 40 samples of each of the
digits 0-6 (dropped into its inbox); that data directory is then copied once per seed, and in
each copy 5 shots of each of 7, 8 and 9 are dropped into the inbox of a running daemon. After
the update (gate on, defaults) the held-out digits are predicted over the socket: accuracy on
the new classes and on the base classes, mean over 5 seeds. Beside it, scikit-learn's
KNeighborsClassifier fitted on the same base samples and shots. Needs the `bench` extra.

Run: .venv/bin/python bench/personalize.py   (last line: one JSON object)
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.conftest

from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

from tailord.daemon.ctl.client import ClientError
from tests.conftest import DaemonProcess, npy_bytes, wait_for

BASE, NEW = list(range(7)), [7, 8, 9]
BASE_PER_CLASS, SHOTS, SEEDS = 40, 5, 5
HEADS = {
    "knn": '[model]\nhead = "knn"\nk = 5\n',
    "linear": '[model]\nhead = "linear"\n[update]\nepochs = 60\nlearning_rate = 0.05\n',
    "auto": '[model]\nhead = "auto"\n[update]\nepochs = 60\nlearning_rate = 0.05\n',
}


def split(x: np.ndarray, y: np.ndarray) -> tuple[list[int], dict[int, list[int]]]:
    rng = np.random.default_rng(0)
    base = [int(i) for c in BASE for i in rng.permutation(np.flatnonzero(y == c))[:BASE_PER_CLASS]]
    pools = {c: [int(i) for i in np.flatnonzero(y == c) if i not in set(base)] for c in range(10)}
    return base, pools


def drop_all(daemon: DaemonProcess, x: np.ndarray, y: np.ndarray, ids: list[int]) -> None:
    for i in ids:
        daemon.drop(str(y[i]), f"{i}.npy", npy_bytes(x[i].astype(np.float32)))


def last_state(daemon: DaemonProcess) -> str:
    try:
        with daemon.client() as client:
            last = client.status().last_update
    except ClientError:  # right after start-up /v1/status may fail for a moment
        return ""
    return "" if last is None else last.state


def gate_reason(daemon: DaemonProcess) -> str:
    with daemon.client() as client:
        last = client.status().last_update
    return "" if last is None or last.gate is None else last.gate.reason


def accuracy(truth: np.ndarray, predicted: list[str], classes: list[int]) -> float:
    mask = np.isin(truth, classes)
    return float(
        np.mean([str(t) == p for t, p in zip(truth[mask], np.array(predicted)[mask], strict=True)])
    )


def run_head(head: str, root: Path, x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    config = root / f"{head}.toml"
    base_ids, pools = split(x, y)
    # prewarm: the worker loads torch while the daemon starts and ingests, as in a long-running
    # daemon; it keeps the 30 daemon starts of this bench inside its time budget.
    warm = "[worker]\nprewarm = true\n"
    config.write_text(HEADS[head] + warm + f"[policy]\nmin_queued = {len(base_ids)}\n")
    base = DaemonProcess(root / head)
    drop_all(base, x, y, base_ids)
    base.start("--config", str(config))
    wait_for(lambda: base.version() == 1, timeout=120)
    base.stop()
    config.write_text(HEADS[head] + warm + f"[policy]\nmin_queued = {SHOTS * len(NEW)}\n")
    rows: list[dict[str, float | str]] = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(100 + seed)
        shots = [int(i) for c in NEW for i in rng.choice(pools[c], SHOTS, replace=False)]
        test = [i for c in range(10) for i in pools[c] if i not in set(shots)]
        copy = DaemonProcess(root / f"{head}-{seed}")
        shutil.copytree(base.data_dir, copy.data_dir, symlinks=True)
        drop_all(copy, x, y, shots)
        copy.start("--config", str(config))
        wait_for(
            lambda c=copy: last_state(c) in ("succeeded", "rejected") and _updates(c) >= 2,
            timeout=120,
        )
        state = last_state(copy)
        if state == "rejected":
            print(f"  {head} seed {seed} rejected: {gate_reason(copy)}")
        with copy.client() as client:
            answer = client.predict([x[i].tolist() for i in test])
        copy.stop(signal.SIGTERM)
        predicted = [str(p.label) for p in answer.predictions]
        knn = KNeighborsClassifier(n_neighbors=5, weights="distance")
        knn.fit(x[base_ids + shots], y[base_ids + shots])
        reference = [str(v) for v in knn.predict(x[test])]
        rows.append(
            {
                "state": state,
                "new": accuracy(y[test], predicted, NEW),
                "base": accuracy(y[test], predicted, BASE),
                "sk_new": accuracy(y[test], reference, NEW),
                "sk_base": accuracy(y[test], reference, BASE),
            }
        )
    return {
        "new": float(np.mean([r["new"] for r in rows])),
        "base": float(np.mean([r["base"] for r in rows])),
        "sk_new": float(np.mean([r["sk_new"] for r in rows])),
        "sk_base": float(np.mean([r["sk_base"] for r in rows])),
        "rejected": sum(r["state"] == "rejected" for r in rows),
        "new_if_promoted": float(
            np.mean([r["new"] for r in rows if r["state"] != "rejected"] or [0.0])
        ),
    }


def _updates(daemon: DaemonProcess) -> int:
    con = sqlite3.connect(daemon.data_dir / "tailord.db")
    try:
        return int(
            con.execute("SELECT count(*) FROM updates WHERE finished_at IS NOT NULL").fetchone()[0]
        )
    finally:
        con.close()


def main() -> None:
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tdp-", dir="/tmp") as tmp:
        for head in HEADS:
            results[head] = run_head(head, Path(tmp), x, y)
            r = results[head]
            print(
                f"{head:7s} new {r['new']:.3f}  base {r['base']:.3f}   "
                f"sklearn kNN new {r['sk_new']:.3f}  base {r['sk_base']:.3f}   "
                f"rejected {r['rejected']}/{SEEDS} (new {r['new_if_promoted']:.3f} when promoted)"
            )
    best = max(results, key=lambda h: float(results[h]["new"]))  # type: ignore[arg-type]
    print(f"({time.perf_counter() - started:.0f} s)")
    print(
        json.dumps(
            {
                "bench": "personalize",
                "value": round(float(results[best]["new"]), 3),  # type: ignore[arg-type]
                "ceiling": round(float(results[best]["sk_new"]), 3),  # type: ignore[arg-type]
                "ratio": round(
                    float(results[best]["new"]) / float(results[best]["sk_new"]),  # type: ignore[arg-type]
                    3,
                ),
                "best_head": best,
                "heads": {
                    h: {k: round(float(v), 3) for k, v in r.items()}  # type: ignore[arg-type]
                    for h, r in results.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
