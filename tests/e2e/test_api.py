"""Every endpoint over the real socket of a real daemon, through the client and tailorctl."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.api.bodies import Event
from tailord.daemon.ctl.client import Client, ClientError, DaemonUnavailable
from tailord.daemon.ctl.main import main as tailorctl
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for


@pytest.fixture(scope="module")
def live() -> Iterator[DaemonProcess]:
    """One daemon for the module; updates run only when asked (long quiet period)."""
    root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    proc = DaemonProcess(root).start("--quiet-seconds", "3600", "--head", "linear")
    yield proc
    if proc.process is not None:
        proc.close()
    shutil.rmtree(root, ignore_errors=True)


class Collector:
    """Reads the event stream on a thread into a queue."""

    def __init__(self, client: Client) -> None:
        self.stream = client.subscribe(timeout=60)
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for event in self.stream:
            self.events.put(event)

    def wait(self, type_: str, **match: object) -> Event:
        def found() -> Event | None:
            while not self.events.empty():
                self.seen.append(self.events.get())
            for event in self.seen:
                if event.type == type_ and all(event.data.get(k) == v for k, v in match.items()):
                    return event
            return None

        return wait_for(found, timeout=60)  # type: ignore[return-value]


def _drop(live: DaemonProcess, n: int, seed: int, prefix: str) -> None:
    for label, vectors in clusters(np.random.default_rng(seed), n).items():
        for i, vector in enumerate(vectors):
            live.drop(label, f"{prefix}{i}.npy", npy_bytes(vector))


def _queued(client: Client) -> int:
    return sum(client.samples(state="queued", limit=1).counts.get("queued", {}).values())


def test_the_whole_api_through_an_update(live: DaemonProcess) -> None:
    with live.client() as client:
        events = Collector(client)
        with pytest.raises(ClientError) as nothing:
            client.update()
        assert nothing.value.status == 409
        assert nothing.value.code == "nothing_queued"
        assert "inbox" in nothing.value.message

        _drop(live, 6, seed=0, prefix="a")
        live.drop("cat", "broken.npy", b"not an npy file")
        events.wait("sample.rejected", name="broken.npy")
        wait_for(lambda: _queued(client) == 12)
        events.wait("sample.queued")

        # Samples: counts and pages that cover every sample once.
        first = client.samples(limit=5)
        assert first.counts == {"queued": {"cat": 6, "dog": 6}}
        assert len(first.samples) == 5
        ids = [s.id for s in first.samples]
        after = first.next_after
        while after is not None:
            page = client.samples(limit=5, after=after)
            ids += [s.id for s in page.samples]
            after = page.next_after
        assert len(ids) == len(set(ids)) == 12
        assert ids == sorted(ids)
        cats = client.samples(label="cat").samples
        assert {s.label for s in cats} == {"cat"}
        assert len(cats) == 6
        assert client.samples(state="learned").samples == []

        # An update with ?wait=true: answered once it has ended, by then served.
        done = client.update(wait=True, timeout=120)
        assert done.state == "succeeded", done
        assert done.version == 1
        assert done.samples == 12
        assert client.update_info(done.id) == done
        assert client.version().version == 1
        changed = events.wait("version.changed", version=1)
        assert changed.data["parent"] == 0
        events.wait("update.began", update=done.id)
        progress = events.wait("update.progress", update=done.id, kind="epoch")
        assert progress.data["loss"] is not None
        judged = events.wait("update.judged", update=done.id)
        assert judged.data["promote"] is True
        assert "enabled" in judged.data["gate"]  # type: ignore[operator]
        events.wait("update.finished", update=done.id, state="succeeded")

        # An update without waiting: 202 and an id to follow.
        _drop(live, 2, seed=1, prefix="b")
        wait_for(lambda: _queued(client) == 4)
        accepted = client.update()
        assert accepted.state in ("pending", "running")
        assert accepted.id == done.id + 1
        wait_for(lambda: client.update_info(accepted.id).state == "succeeded", timeout=120)
        assert client.update_info(accepted.id).version == 2

        versions = client.versions().versions
        assert [v.number for v in versions] == [0, 1, 2]
        assert [v.current for v in versions] == [False, False, True]
        assert [v.pinned or v.removed for v in versions] == [False, False, False]
        assert versions[2].parent == 1
        detail = client.version_info(2)
        assert detail.manifest["version"] == 2
        assert sorted(detail.manifest["labels"]) == ["cat", "dog"]  # type: ignore[call-overload]
        assert detail.update == accepted.id

        status = client.status()
        assert status.version == 2
        assert status.state == "idle"
        assert status.last_update is not None
        assert status.last_update.id == accepted.id
        assert status.policy
        assert status.queue == {}

        unseen = clusters(np.random.default_rng(5), 2)
        answer = client.predict([v.tolist() for v in unseen["cat"] + unseen["dog"]])
        assert answer.version == 2
        assert [p.label for p in answer.predictions] == ["cat", "cat", "dog", "dog"]
        raw = client.predict_file(npy_bytes(unseen["dog"][0]), "application/x-npy")
        assert raw.predictions[0].label == "dog"
        ranked = client.predict([unseen["dog"][0].tolist()], top=5).predictions[0]
        assert isinstance(ranked.top, list)
        assert [p.label for p in ranked.top] == ["dog", "cat"]  # only two are known
        assert (ranked.top[0].label, ranked.top[0].score) == (ranked.label, ranked.score)
        assert ranked.top[0].score >= ranked.top[1].score
        # The wire format itself: exactly these keys.
        body = json.dumps({"inputs": [unseen["dog"][0].tolist()]}).encode()
        wire = client.request("POST", "/v1/predict?top=5", body)["predictions"][0]
        assert wire["top"][0] == {"label": wire["label"], "score": wire["score"]}
        with pytest.raises(ClientError, match="top"):
            client.predict([unseen["dog"][0].tolist()], top=0)

        metrics = client.metrics()
        assert "tailord_current_version 2.0" in metrics
        assert 'tailord_update_duration_seconds_count{state="succeeded"} 2.0' in metrics
        assert 'tailord_ingest_files_total{outcome="ingested"} 16.0' in metrics
        assert 'tailord_ingest_files_total{outcome="rejected"} 1.0' in metrics
        assert 'route="/v1/updates/{id}",status="200"' in metrics
        assert 'route="/v1/update",status="409"' in metrics
        assert "tailord_queue_samples" in metrics

        assert str(client.openapi()["openapi"]).startswith("3.1")
        events.stream.close()


def test_tailorctl_commands(live: DaemonProcess, capsys: pytest.CaptureFixture[str]) -> None:
    sock = ["--socket", str(live.socket)]

    def run(*args: str) -> str:
        code = tailorctl([*sock, *args])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.out

    version = json.loads(run("--json", "version"))["version"]
    assert f"{version}" in run("version")
    assert "policy" in run("status")
    listed = json.loads(run("--json", "versions"))
    assert listed[-1]["current"] is True
    assert "version" in run("versions")
    assert json.loads(run("--json", "versions", "0"))["manifest"]["version"] == 0
    assert "queued" in run("samples") or "learned" in run("samples")
    assert json.loads(run("--json", "samples", "--limit", "1"))["samples"]
    assert "tailord_api_request_seconds" in run("metrics")
    assert "/v1/events" in json.loads(run("openapi"))["paths"]

    _drop(live, 2, seed=7, prefix="ctl")
    with live.client() as client:
        wait_for(lambda: _queued(client) == 4)
    out = run("update", "--wait")
    assert "succeeded" in out
    assert f"version {version + 1}" in out
    shown = json.loads(run("--json", "update", "--show", "1"))
    assert shown["id"] == 1

    assert tailorctl([*sock, "update"]) == 1  # nothing queued now
    assert "nothing is queued" in capsys.readouterr().err.lower()

    sample = live.root / "one.npy"
    sample.write_bytes(npy_bytes(clusters(np.random.default_rng(9), 1)["dog"][0]))
    assert json.loads(run("--json", "predict", str(sample)))["predictions"][0]["label"] == "dog"
    table = run("predict", "--top", "2", str(sample))
    assert "dog" in table
    assert "cat" in table  # the runner-up, on its own row


def test_tailorctl_events_follows_the_stream(live: DaemonProcess) -> None:
    code = "import sys; from tailord.daemon.ctl.main import main; sys.exit(main())"
    args = [sys.executable, "-c", code, "--socket", str(live.socket), "--json", "events"]
    with live.client() as client:
        before = _subscriptions(client)
        ctl = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: _subscriptions(client) > before)  # tailorctl has subscribed
    with ctl:
        assert ctl.stdout is not None
        live.drop("cat", "followed.npy", npy_bytes(np.full(8, 5.0, dtype=np.float32)))
        event = json.loads(ctl.stdout.readline())
        ctl.terminate()
    assert event["type"] == "sample.queued"
    assert event["data"]["count"] == 1
    assert set(event) == {"id", "type", "time", "data"}


def _subscriptions(client: Client) -> float:
    """How many /v1/events requests the daemon has answered (from its metrics)."""
    key = 'tailord_api_request_seconds_count{method="GET",route="/v1/events",status="200"}'
    for line in client.metrics().splitlines():
        if line.startswith(key):
            return float(line.split()[-1])
    return 0.0


def test_tailorctl_says_when_the_daemon_is_not_running(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tailorctl(["--socket", str(short_tmp / "none.sock"), "status"]) == 1
    err = capsys.readouterr().err
    assert "not running" in err
    assert "tailord serve" in err
    with pytest.raises(DaemonUnavailable), Client(short_tmp / "none.sock") as client:
        next(client.events())


@pytest.mark.slow
def test_events_end_when_the_daemon_stops(short_tmp: Path) -> None:
    proc = DaemonProcess(short_tmp).start()
    with proc.client() as client:
        stream = client.subscribe(timeout=30)
        ended = threading.Event()

        def follow() -> None:
            for _ in stream:
                pass
            ended.set()

        threading.Thread(target=follow, daemon=True).start()
        assert proc.stop() == 0
        assert ended.wait(10), "the stream did not end at shutdown"
