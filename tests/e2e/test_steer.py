"""Steering over the real socket: an update's own parameters, cancelling one, requeueing
samples, and adding them over the socket (also as another uid, a member of its group)."""

from __future__ import annotations

import grp
import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tailord.daemon.api import bodies
from tailord.daemon.ctl.client import Client, ClientError
from tailord.daemon.ctl.main import main as tailorctl
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow


def _drop(proc: DaemonProcess, n: int, seed: int, prefix: str) -> None:
    for label, vectors in clusters(np.random.default_rng(seed), n).items():
        for i, vector in enumerate(vectors):
            proc.drop(label, f"{prefix}{i}.npy", npy_bytes(vector))


def _queued(client: Client) -> int:
    return sum(client.status().samples.get("queued", {}).values())


@pytest.fixture
def manual(short_tmp: Path) -> Iterator[DaemonProcess]:
    """A linear head whose updates run only when asked."""
    proc = DaemonProcess(short_tmp).start("--quiet-seconds", "3600", "--head", "linear")
    yield proc
    proc.close()


def test_an_update_runs_with_its_own_parameters(
    manual: DaemonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with manual.client() as client:
        _drop(manual, 6, seed=0, prefix="a")
        wait_for(lambda: _queued(client) == 12)

        for body, named in (
            ({"epochs": 0}, "epochs = 0: must be an integer >= 1"),
            ({"epoch": 3}, "unknown key 'epoch'"),
            ({"learning_rate": "fast"}, "learning_rate"),
            ({"optimizer": "lion"}, 'optimizer = "lion": must be one of "adam", "sgd"'),
            ({"k": 3}, "k applies to a k-NN head"),
        ):
            with pytest.raises(ClientError) as refused:
                client.request("POST", "/v1/update", json.dumps(body).encode())
            assert refused.value.status == 422, body
            assert named in refused.value.message, refused.value.message
        with pytest.raises(ClientError) as in_query:
            client.request("POST", "/v1/update?epochs=3")
        assert in_query.value.status == 422
        assert "JSON body" in in_query.value.message
        assert client.status().last_update is None, "a refused request makes no update"

        asked = bodies.UpdateRequest(epochs=3, learning_rate=0.001, seed=7, optimizer="sgd")
        done = client.update(asked, wait=True, timeout=120)
        assert done.state == "succeeded", done
        assert done.params is not bodies.UNSET
        assert (done.params.epochs, done.params.learning_rate) == (3, 0.001)
        assert (done.params.seed, done.params.optimizer) == (7, "sgd")
        assert done.params.batch_size == 32, "keys left out keep the configured value"
        assert done.params.k is bodies.UNSET, "k means nothing to a linear head"
        assert client.update_info(done.id).params == done.params
        # Applied, not only recorded: the version's curve has one point per epoch run.
        assert len(client.version_info(done.version or 0).metrics.curve or []) == 3

        # tailorctl: flags for the same parameters.
        _drop(manual, 2, seed=1, prefix="b")
        wait_for(lambda: _queued(client) == 4)
        capsys.readouterr()
        code = tailorctl(
            [
                "--socket",
                str(manual.socket),
                "update",
                "--epochs",
                "2",
                "--no-shuffle",
                "--wait",
                "--json",
            ]
        )
        shown = json.loads(capsys.readouterr().out)
        assert code == 0, shown
        assert shown["params"]["epochs"] == 2
        assert shown["params"]["shuffle"] is False
        assert shown["params"]["learning_rate"] == 0.01, "the configured one, this time"
        curve = client.version_info(shown["version"]).metrics.curve
        assert curve is not bodies.UNSET
        assert len(curve) == 2


def _running(client: Client) -> bodies.UpdateInfo | None:
    last = client.status().last_update
    if last is None or last.state != "running" or last.progress is None:
        return None
    return last


def test_a_cancelled_update_keeps_its_samples_and_is_not_retried(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = short_tmp / "tailord.toml"
    # Every automatic update runs long: there is time to cancel it while it trains.
    config.write_text("[update]\nepochs = 100000\nbatch_size = 1\n")
    proc = DaemonProcess(short_tmp).start("--config", str(config), "--head", "linear")
    try:
        with proc.client() as client:
            _drop(proc, 6, seed=0, prefix="a")
            running = wait_for(lambda: _running(client), timeout=60)
            assert isinstance(running, bodies.UpdateInfo)
            assert running.reason != "requested", "started by the policy"
            # A request joins the running update, unless it asks for other parameters.
            assert client.update().id == running.id
            same = bodies.UpdateRequest(epochs=100000, batch_size=1)
            assert client.update(same).id == running.id
            with pytest.raises(ClientError) as differs:
                client.update(bodies.UpdateRequest(epochs=2))
            assert differs.value.status == 409
            assert differs.value.code == "parameters_differ"
            assert "epochs 100000, not 2" in differs.value.message
            assert f"tailorctl update --cancel {running.id}" in differs.value.message

            capsys.readouterr()
            assert tailorctl(["--socket", str(proc.socket), "update", "--cancel", "--json"]) == 0
            ended = client.update_info(running.id)
            assert ended.state == "cancelled", ended
            assert ended.error == "cancelled by root (uid 0)"
            assert json.loads(capsys.readouterr().out)["state"] == "cancelled"
            status = client.status()
            assert status.samples == {"queued": {"cat": 6, "dog": 6}}, "its samples stay queued"
            assert [v.number for v in client.versions().versions] == [0], "nothing published"
            assert not (proc.data_dir / "checkpoints").exists(), "its checkpoint is dropped"

            # Not retried by itself: the policy holds until a new sample arrives.
            wait_for(lambda: "cancelled" in client.status().policy, timeout=30)
            assert client.status().last_update == ended
            with pytest.raises(ClientError) as again:
                client.cancel(ended.id)
            assert again.value.status == 409
            with pytest.raises(ClientError) as missing:
                client.cancel(ended.id + 100)
            assert missing.value.status == 404

            # A new sample ends the hold: the next automatic update starts (and is cancelled).
            proc.drop("cat", "new.npy", npy_bytes(np.full(8, 2.0, np.float32)))
            second = wait_for(lambda: _running(client), timeout=60)
            assert isinstance(second, bodies.UpdateInfo)
            assert second.id == ended.id + 1
            assert client.cancel(second.id).state == "cancelled"

            # Asked for, with its own parameters: it runs, and learns the queue.
            done = client.update(bodies.UpdateRequest(epochs=2), wait=True, timeout=120)
            assert done.state == "succeeded", done
            assert done.samples == 13
            assert client.status().samples.get("queued", {}) == {}
    finally:
        proc.close()


def test_rejected_samples_are_requeued_and_learned(
    manual: DaemonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    ctl = ["--socket", str(manual.socket)]
    with manual.client() as client:
        _drop(manual, 20, seed=0, prefix="a")
        wait_for(lambda: _queued(client) == 40)
        assert client.update(wait=True, timeout=120).state == "succeeded"

        # A new label learned without replay: the candidate forgets cat and dog, and the
        # gate keeps its samples out (rejected).
        rng = np.random.default_rng(1)
        center = np.full(8, 2.0)
        center[:2] = -2.0  # near cat: learned alone, it takes cat's place
        birds = [(center + rng.normal(0, 0.3, 8)).astype(np.float32) for _ in range(20)]
        for i, vector in enumerate(birds):
            manual.drop("bird", f"b{i}.npy", npy_bytes(vector))
        wait_for(lambda: _queued(client) == 20)
        forgetful = bodies.UpdateRequest(replay=0, epochs=50, learning_rate=0.05)
        refused = client.update(forgetful, wait=True, timeout=120)
        assert refused.state == "rejected", (refused.gate, refused.metrics.replayed)
        assert client.status().samples["rejected"] == {"bird": 20}

        capsys.readouterr()
        assert tailorctl([*ctl, "samples", "--state", "rejected", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)["samples"]
        assert len(listed) == 20
        assert {s["state"] for s in listed} == {"rejected"}
        assert tailorctl([*ctl, "status"]) == 0
        table = capsys.readouterr().out
        assert "rejected" in table
        bird_row = next(row for row in table.splitlines() if "bird" in row)
        assert bird_row.split()[-2:] == ["0", "20"] or "20" in bird_row

        # The same file dropped again is not "already known": it says it stays rejected.
        manual.drop("bird", "again.npy", npy_bytes(birds[0]))
        reason = manual.inbox / ".rejected" / "again.npy.reason"
        wait_for(reason.exists, timeout=30)
        assert "tailorctl requeue" in reason.read_text()
        assert "rejected" in reason.read_text()

        # Requeued by id, by label, by state: counted once each, labels kept.
        one = listed[0]["id"]
        assert client.requeue([one]) == bodies.RequeueResult(1, 0)
        assert client.requeue([one]) == bodies.RequeueResult(0, 1)
        capsys.readouterr()
        assert tailorctl([*ctl, "requeue", "--state", "rejected", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"already_queued": 0, "requeued": 19}
        assert client.status().samples["queued"] == {"bird": 20}
        with pytest.raises(ClientError) as nothing_named:
            client.request("POST", "/v1/samples/requeue", b"{}")
        assert nothing_named.value.status == 422

        learned = client.update(wait=True, timeout=120)
        assert learned.state == "succeeded", learned
        assert learned.samples == 20
        assert client.status().samples.get("rejected", {}) == {}
        assert client.status().samples["learned"] == {"bird": 20, "cat": 20, "dog": 20}
        assert client.predict([[float(v) for v in birds[1]]]).predictions[0].label == "bird"


def test_samples_are_added_over_the_socket(
    manual: DaemonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = clusters(np.random.default_rng(3), 3)
    with manual.client() as client:
        one = client.add_file(npy_bytes(vectors["cat"][0]), "application/x-npy", "cat")
        assert (one.added, one.duplicates, one.relabeled) == (1, 0, 0)
        (stored,) = one.samples
        assert (stored.label, stored.state) == ("cat", "queued")
        again = client.add_file(npy_bytes(vectors["cat"][0]), "application/x-npy", "cat")
        assert again.duplicates == 1
        assert again.samples == [stored], "a duplicate answers its row"
        relabeled = client.add_samples([{"label": "dog", "vector": vectors["cat"][0].tolist()}])
        assert relabeled.relabeled == 1
        assert relabeled.samples[0].id == stored.id

        lines = b"".join(
            json.dumps({"label": "dog", "vector": v.tolist()}).encode() + b"\n"
            for v in vectors["dog"]
        )
        batch = client.add_file(lines, "application/x-ndjson", None)
        assert batch.added == 3
        assert [s.label for s in batch.samples] == ["dog"] * 3

        # All or nothing, and the inbox's own checks: the message names the sample.
        bad = [{"label": "cat", "vector": v.tolist()} for v in vectors["cat"][1:]]
        bad.append({"label": "cat", "vector": [1.0, 2.0]})
        with pytest.raises(ClientError) as refused:
            client.add_samples(bad)
        assert refused.value.status == 422
        assert "sample 3" in refused.value.message
        assert "this model takes 8" in refused.value.message
        for args, status in (
            ((npy_bytes(vectors["cat"][1]), "application/x-npy", None), 400),
            ((b"hello", "text/plain", "cat"), 415),
            ((b"not npy", "application/x-npy", "cat"), 422),
            ((npy_bytes(vectors["cat"][1]), "application/x-npy", "\x1b[31m"), 422),
        ):
            with pytest.raises(ClientError) as wrong:
                client.add_file(*args)
            assert wrong.value.status == status, (args[1:], wrong.value.message)
        assert _queued(client) == 4, "nothing refused was stored"

        path = manual.root / "one.npy"
        path.write_bytes(npy_bytes(vectors["cat"][2]))
        capsys.readouterr()
        assert tailorctl(["--socket", str(manual.socket), "add", str(path), "--label", "cat"]) == 0
        assert "1 added" in capsys.readouterr().out
        assert _queued(client) == 5
        page = client.samples(label="cat").samples
        assert [s.source for s in page] == ["socket:uid-0"]
        done = client.update(wait=True, timeout=120)
        assert done.state == "succeeded", done
        assert done.samples == 5


def _add_as(socket: Path, uid: int, gid: int, sample: list[float]) -> dict[str, object]:
    """``POST /v1/samples`` from a forked process that is ``uid`` in group ``gid`` only."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            try:
                with Client(socket, timeout=30) as client:
                    answer = client.add_samples([{"label": "cat", "vector": sample}])
                payload = {"uid": os.getuid(), "answer": msgspec.to_builtins(answer)}
            except ClientError as exc:
                payload = {"uid": os.getuid(), "status": exc.status, "error": exc.message}
            os.write(write, json.dumps(payload).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    return dict(json.loads(data))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_a_member_of_the_sockets_group_adds_a_sample(short_tmp: Path) -> None:
    try:
        group = grp.getgrnam("nogroup")
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no nobody / nogroup here")
    # The socket's folder belongs to the group (setgid: the socket inherits it), as with
    # systemd's RuntimeDirectory and a SocketGroup; the daemon admits the group's members.
    os.chmod(short_tmp, 0o755)
    run = short_tmp / "run"
    run.mkdir()
    os.chown(run, 0, group.gr_gid)
    os.chmod(run, 0o2750)
    config = short_tmp / "tailord.toml"
    config.write_text(f'[api]\nallowed_groups = ["{group.gr_name}"]\n')
    proc = DaemonProcess(short_tmp).start("--config", str(config), "--quiet-seconds", "3600")
    try:
        assert proc.socket.stat().st_gid == group.gr_gid
        sample = [2.0] * 8
        member = _add_as(proc.socket, nobody.pw_uid, group.gr_gid, sample)
        assert member["uid"] == nobody.pw_uid != 0
        answer = member["answer"]
        assert isinstance(answer, dict)
        assert answer["added"] == 1
        assert answer["samples"][0]["state"] == "queued"
        with proc.client() as client:
            (stored,) = client.samples().samples
        assert stored.source == f"socket:uid-{nobody.pw_uid}:1"  # the first of its batch

        # The same uid outside the group is refused: the group is what admits it.
        outsider = _add_as(proc.socket, nobody.pw_uid, nobody.pw_uid - 1, sample)
        assert "answer" not in outsider
    finally:
        proc.close()


def test_a_knn_update_votes_with_its_own_k(short_tmp: Path) -> None:
    proc = DaemonProcess(short_tmp).start("--quiet-seconds", "3600")  # a k-NN head
    try:
        with proc.client() as client:
            vectors = clusters(np.random.default_rng(4), 4)
            client.add_samples(
                [
                    {"label": label, "vector": v.tolist()}
                    for label, vs in vectors.items()
                    for v in vs
                ]
            )
            done = client.update(bodies.UpdateRequest(k=1), wait=True, timeout=120)
            assert done.state == "succeeded", done
            assert done.params is not bodies.UNSET
            assert done.params.k == 1
            manifest = client.version_info(done.version or 0).manifest
            assert isinstance(manifest["spec"], dict)
            assert manifest["spec"]["k"] == 1, "the version votes with the update's k"

            # The next update, with the configured k: the memory is kept, not relearned.
            client.add_samples([{"label": "cat", "vector": [2.0] * 8}])
            later = client.update(wait=True, timeout=120)
            assert later.state == "succeeded", later
            assert later.params is not bodies.UNSET
            assert later.params.k == 5
            after = client.version_info(later.version or 0)
            assert after.manifest["spec"]["k"] == 5  # type: ignore[index]
            assert after.sample_count == 9, "eight kept rows and the new one"
    finally:
        proc.close()
