"""Bench: one update of 10,000 vectors x 10 epochs through the real path, beside bare torch.

Real path, as the issue puts it: samples in SQLite -> Updater -> spawned worker process
(reads SQLite, trains, checkpoints each epoch, gates, writes the candidate) -> candidate back
in the daemon (the ``update.judged`` event). That is the headline figure. Publishing follows
(version folder fsynced, ``current`` flipped, the 10,000 samples marked learned in one
durable transaction, the new version served) and is reported beside it, as ``published``.
The ceiling is a bare torch loop on the same tensors, same head, optimizer, batch size and
thread count, in this process. Goal: real / bare <= 1.15. Also printed: the worker's
training loop alone.
The worker runs with [worker] prewarm = true (torch loaded before the update is due, as in a
daemon that has been up a while) and nice = 0, so both sides get the same CPU share on a
shared machine (the daemon's default nice 10 would measure other users' load, not tailord).

Run: .venv/bin/python bench/update.py   (last line: one JSON object)
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tailord.daemon.config import load_config
from tailord.daemon.events import EventBus
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.publish import ensure_base
from tailord.daemon.versions.reconcile import reconcile
from tailord.daemon.versions.serving import Serving
from tailord.storage.db import open_database
from tailord.storage.samples import NewSample, add_samples
from tailord.storage.versions import VersionStore

N, DIM, LABELS, EPOCHS, BATCH, HIDDEN = 10_000, 128, 10, 10, 32, 128
ROUNDS = 5


def data(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (LABELS, DIM))
    y = rng.integers(0, LABELS, N)
    x = (centers[y] + rng.normal(0, 1.0, (N, DIM))).astype(np.float32)
    return x, [f"c{i}" for i in y]


def real_path(root: Path, x: np.ndarray, names: list[str]) -> tuple[float, dict[str, float]]:
    (root / "config.toml").write_text(
        f'[model]\nhead = "mlp"\nhidden = {HIDDEN}\n'
        f"[update]\nepochs = {EPOCHS}\nbatch_size = {BATCH}\nlearning_rate = 0.001\n"
        'device = "cpu"\n[gate]\nenabled = false\n[worker]\nprewarm = true\nnice = 0\n'
    )
    config = load_config(root / "config.toml", data_dir=root / "data", socket=root / "s.sock")
    config.data_dir.mkdir(parents=True)
    db = open_database(config.database)
    with db.write() as session:
        samples = []
        for i, (row, label) in enumerate(zip(x, names, strict=True)):
            payload = row.astype("<f4").tobytes()
            sha = hashlib.sha256(payload).hexdigest()
            samples.append(NewSample(sha, label, "vector", payload, f"{i}", len(payload)))
        add_samples(session, samples)
    store = VersionStore(config.data_dir)
    ensure_base(store, db, config.model)
    serving = Serving()
    serving.load(store, reconcile(store, db))
    bus, stamps = EventBus(), {}
    bus.listen(lambda event: stamps.setdefault(event.type, time.perf_counter()))
    history = History(store, db, serving, bus, config.model, config.versions.keep)
    updater = Updater(config, db, store, history, bus, lambda: False)
    # [worker] prewarm: the worker's interpreter and torch load before the update is due,
    # as in a daemon that has been running; wait until it is up so they are not timed.
    assert updater.workers.wait_warm(60), "the prewarmed worker did not start"
    started = time.perf_counter()
    number = updater.run("bench")
    published = time.perf_counter() - started
    assert number == 1, "the update did not publish a version"
    candidate = stamps["update.judged"] - started
    metrics = store.read(1).manifest["metrics"]
    # The next prewarmed worker starts once the update is done; let it load before the bare
    # loop runs, so its start-up does not land on the ceiling's side.
    updater.workers.wait_warm(60)
    db.close()
    return candidate, {"train": float(metrics["seconds"]), "published": published}


def bare(x: np.ndarray, names: list[str]) -> float:
    torch.set_num_threads(1)
    labels = sorted(set(names), key=names.index)
    targets = torch.tensor([labels.index(n) for n in names])
    inputs = torch.from_numpy(x)
    started = time.perf_counter()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, len(labels)))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.001)
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        order = torch.randperm(N, generator=generator)
        for begin in range(0, N, BATCH):
            pick = order[begin : begin + BATCH]
            loss = nn.functional.cross_entropy(net(inputs[pick]), targets[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
    return time.perf_counter() - started


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    x, names = data()
    # Five rounds, the bare loop between real runs, medians of each: on a shared machine a
    # single pair mostly measures who else was busy at that moment.
    bare(x, names)  # warm-up, not counted: torch's first optimizer imports torch._dynamo
    reals, bares, trains, publishes = [], [bare(x, names)], [], []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="tdb-", dir="/tmp") as tmp:
            wall, parts = real_path(Path(tmp), x, names)
        reals.append(wall)
        trains.append(parts["train"])
        publishes.append(parts["published"])
        bares.append(bare(x, names))
    value, ceiling = statistics.median(reals), statistics.median(bares)
    train, published = statistics.median(trains), statistics.median(publishes)
    print(f"real runs {[round(r, 2) for r in reals]}, bare runs {[round(b, 2) for b in bares]}")
    print(f"real path (SQLite -> worker -> candidate): {value:.2f} s (median)")
    print(f"  of which the worker's training loop:     {train:.2f} s")
    print(f"  and then published and served:           {published:.2f} s (median)")
    print(f"bare torch loop, same tensors:             {ceiling:.2f} s")
    print(f"ratio {value / ceiling:.2f} (goal <= 1.15); published {published / ceiling:.2f}")
    print(f"training loop alone / bare: {train / ceiling:.2f}")
    print(
        json.dumps(
            {
                "bench": "update",
                "value": round(value, 3),
                "ceiling": round(ceiling, 3),
                "ratio": round(value / ceiling, 3),
                "published_seconds": round(published, 3),
                "published_ratio": round(published / ceiling, 3),
                "train_seconds": round(train, 3),
                "train_ratio": round(train / ceiling, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
