"""Forget, exactly: daemon A learns S and F and forgets F; daemon B learns only S, with the
same seed and parameters. A's new version equals B's, and no file under A's data folder
holds a byte sequence of F's payloads."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from tailord.daemon.api import bodies
from tailord.daemon.ctl.client import ClientError
from tailord.storage.versions import VersionStore
from tailord.trainer.model import Model
from tests.conftest import DaemonProcess, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # two daemons, three updates


Row = tuple[str, np.ndarray]


def rows(n: int, seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = ("cat", "dog", "owl")[i % 3]
        centre = {"cat": 2.0, "dog": -2.0, "owl": 0.0}[label]
        out.append((label, (centre + rng.normal(0, 1.0, 8)).astype(np.float32)))
    return out


def learn(daemon: DaemonProcess, batch: list[Row]) -> None:
    """One .jsonl batch (its lines keep their order, so sample ids do too), one update."""
    daemon.inbox.mkdir(parents=True, exist_ok=True)
    body = "".join(json.dumps({"label": lab, "vector": v.tolist()}) + "\n" for lab, v in batch)
    tmp = daemon.inbox / ".batch.jsonl"
    tmp.write_text(body)
    os.rename(tmp, daemon.inbox / "batch.jsonl")
    with daemon.client() as client:
        wait_for(
            lambda: sum(client.status().samples.get("learned", {}).values()) == len(batch),
            timeout=120,
        )


def stored(data_dir: Path, where: str) -> list[tuple[int, str, bytes]]:
    con = sqlite3.connect(data_dir / "tailord.db")
    try:
        found = con.execute(f"SELECT id, sha256, payload FROM samples WHERE {where} ORDER BY id")
        return [(int(i), str(s), bytes(p)) for i, s, p in found]
    finally:
        con.close()


def tensors(data_dir: Path, number: int) -> dict[str, np.ndarray]:
    return safetensors.numpy.load(VersionStore(data_dir).read(number).weights)


def every_file(root: Path) -> list[Path]:
    return [
        Path(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if not Path(folder, name).is_symlink()
    ]


@pytest.mark.parametrize("head", ["knn", "linear"])
def test_forgetting_equals_never_having_learned(short_tmp: Path, head: str) -> None:
    everything = rows(30, seed=0)
    kept = [row for i, row in enumerate(everything) if i % 5 != 2]  # S; F is every 5th
    a = DaemonProcess(short_tmp / "a")
    b = DaemonProcess(short_tmp / "b")
    a.root.mkdir()
    b.root.mkdir()
    try:
        a.start("--head", head)
        learn(a, everything)
        assert a.version() == 1
        doomed = stored(a.data_dir, "id % 5 = 3")  # ids count from 1: rows 2, 7, 12...
        assert len(doomed) == 6
        with a.client() as client:
            client.pin(1)
            with pytest.raises(ClientError, match="pinned version\\(s\\) 1") as refused:
                client.forget(bodies.ForgetRequest(sha256=[sha for _, sha, _ in doomed]))
            assert refused.value.status == 409
            assert a.version() == 1  # refused: nothing changed
            done = client.forget(
                bodies.ForgetRequest(sha256=[sha for _, sha, _ in doomed], force=True)
            )
            status = client.status()
        assert done.samples == [i for i, _, _ in doomed]
        assert done.learned == 6
        assert done.versions_removed == [1]
        assert done.version == 2
        assert 0 < done.seconds < 120
        assert status.version == 2
        assert sum(status.samples.get("learned", {}).values()) == len(kept)

        # Nothing of F is left on disk: not in the database, its log, a version, staging.
        files = every_file(a.data_dir)
        assert a.data_dir / "tailord.db" in files
        for path in files:
            data = path.read_bytes()
            for _, _, payload in doomed:
                assert payload not in data, path
        assert not list((a.data_dir / "staging").iterdir())
        assert not (a.data_dir / "checkpoints").exists()
        assert not (a.data_dir / "versions" / "1").exists()

        b.start("--head", head)
        learn(b, kept)
        assert b.version() == 1
        mine, theirs = tensors(a.data_dir, 2), tensors(b.data_dir, 1)
        assert sorted(mine) == sorted(theirs)
        for name, value in theirs.items():
            assert np.array_equal(mine[name], value), name  # bit-equal, on CPU
        model_a = Model.from_bytes(VersionStore(a.data_dir).read(2).weights)
        model_b = Model.from_bytes(VersionStore(b.data_dir).read(1).weights)
        assert model_a.labels == model_b.labels
        assert model_a.sample_count == model_b.sample_count == len(kept)
    finally:
        a.close()
        b.close()


def test_a_forgotten_file_is_learned_again_only_when_asked(daemon: DaemonProcess) -> None:
    daemon.start("--quiet-seconds", "3600")  # nothing learned: forgetting needs no retrain
    vector = np.arange(8, dtype=np.float32)
    daemon.drop("cat", "a.npy", npy_bytes(vector))
    with daemon.client() as client:
        wait_for(lambda: client.status().queued == 1, timeout=60)
        done = client.forget(bodies.ForgetRequest(label="cat"))
        assert done.learned == 0
        assert done.versions_removed == []
        assert done.version == 0
        assert client.status().queued == 0
        with pytest.raises(ClientError, match="No sample matches") as missing:
            client.forget(bodies.ForgetRequest(label="cat"))
        assert missing.value.status == 404

        daemon.drop("cat", "again.npy", npy_bytes(vector))
        wait_for(lambda: not (daemon.inbox / "cat" / "again.npy").exists(), timeout=60)
        assert client.status().queued == 0  # acknowledged, not learned again
        assert "forgotten before" in daemon.log.read_text()

        daemon.drop("cat", "again.relearn.npy", npy_bytes(vector))
        wait_for(lambda: client.status().queued == 1, timeout=60)


def test_an_interrupted_forget_is_finished_at_start_up(daemon: DaemonProcess) -> None:
    from tailord.storage.db import open_database
    from tailord.storage.forget import erase, find

    daemon.start()
    learn(daemon, rows(9, seed=3))
    assert daemon.version() == 1
    assert daemon.stop() == 0
    # Stopped after the erase's commit, before the rebuild: version 1 still holds them.
    owls = [payload for _, _, payload in stored(daemon.data_dir, "label = 'owl'")]
    assert len(owls) == 3
    db = open_database(daemon.data_dir / "tailord.db")
    with db.read() as session:
        doomed = find(session, [], [], "owl")
    with db.write() as session:
        erase(session, doomed)
    db.close()

    daemon.start()
    with daemon.client() as client:
        # The main loop's first task: rebuild, then remove version 1.
        wait_for(lambda: client.versions().versions[1].removed, timeout=120)
        listing = {v.number: v for v in client.versions().versions}
        status = client.status()
    assert listing[2].current
    assert sum(status.samples.get("learned", {}).values()) == 6
    assert "a forget was interrupted" in daemon.log.read_text()
    wait_for(lambda: "database compacted" in daemon.log.read_text(), timeout=60)
    assert (daemon.data_dir / "versions" / "2" / "samples.txt").read_text().count("\n") == 6
    for path in every_file(daemon.data_dir):
        data = path.read_bytes()
        assert not any(owl in data for owl in owls), path
