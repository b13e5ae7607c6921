"""Bench: personalization scenarios through a real daemon, beside scikit-learn peers.

Scenarios (``--scenario``, all by default): ``new-classes`` (below), ``style``, ``stream`` and
``split`` (the style samples in 1, 2 and 5 updates; bench/personalize_scenarios.py).
``new-classes``: for each head (knn, linear, auto): a daemon learns a base model from 40 samples
of each of the digits 0-6 (dropped into its inbox); that data directory is then copied once
per seed, and in each copy 5 shots of each of 7, 8 and 9 are dropped into the inbox of a
running daemon. After the update (gate on, defaults) the held-out digits are predicted over
the socket: accuracy on the new classes and on the base classes, mean over the seeds. Beside
it, scikit-learn's KNeighborsClassifier fitted on the same base samples and shots. Needs the
`bench` extra.

Run: .venv/bin/python bench/personalize.py [--scenario style] [--heads knn,auto] [--seeds 3]
     [--transform rot90|shift|thick] [--dataset wine|breast_cancer]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
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

from bench.personalize_scenarios import DATASETS, TRANSFORMS, split_updates, stream, style
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


def run_head(
    head: str, root: Path, x: np.ndarray, y: np.ndarray, seeds: int = SEEDS
) -> dict[str, float]:
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
    for seed in range(seeds):
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario", choices=["new-classes", "style", "stream", "split", "all"], default="all"
    )
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated: knn,linear,auto")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--transform", choices=sorted(TRANSFORMS), default="rot90")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="wine")
    args = parser.parse_args()
    scenarios = (
        ["new-classes", "style", "stream", "split"] if args.scenario == "all" else [args.scenario]
    )
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tdp-", dir="/tmp") as tmp:
        for scenario in scenarios:
            for head in args.heads.split(","):
                root = Path(tmp) / f"{scenario}-{head}"
                root.mkdir()
                if scenario == "new-classes":
                    r = run_head(head, root, x, y, args.seeds)
                elif scenario == "style":
                    r = style(HEADS[head], root, args.seeds, args.transform)
                elif scenario == "stream":
                    r = stream(HEADS[head], root, args.seeds, args.dataset)
                else:
                    r = split_updates(HEADS[head], root, args.transform)
                results.setdefault(scenario, {})[head] = r
                print(
                    f"{scenario:11s} {head:6s} " + "  ".join(f"{k} {v:.3f}" for k, v in r.items())
                )
                sys.stdout.flush()
    print(f"({time.perf_counter() - started:.0f} s)")
    figures = {
        s: {h: {k: round(float(v), 3) for k, v in r.items()} for h, r in heads.items()}
        for s, heads in results.items()
    }
    value, ceiling = _headline(results)
    print(
        json.dumps(
            {
                "bench": "personalize",
                "value": round(value, 3),
                "ceiling": round(ceiling, 3),
                "ratio": round(value / ceiling, 3) if ceiling else None,
                "seeds": args.seeds,
                "transform": args.transform,
                "dataset": args.dataset,
                "scenarios": figures,
            }
        )
    )


def _headline(results: dict[str, dict[str, dict[str, float]]]) -> tuple[float, float]:
    """The default head's figure beside its best scikit-learn peer: style's user accuracy if
    it ran, else the stream's, else new-classes' accuracy on the new classes."""
    for scenario, ours, peers in (
        ("style", "user", ("sk_knn1_user", "sk_knn3_user", "sk_knn5_user", "sk_logreg_user")),
        ("stream", "stream", ("sk_std_knn5",)),
        ("new-classes", "new", ("sk_new",)),
    ):
        for r in results.get(scenario, {}).values():
            return r[ours], max(r[p] for p in peers)
    return 0.0, 0.0


if __name__ == "__main__":
    main()
