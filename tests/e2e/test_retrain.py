"""Retraining from base: asked for over the socket, and what a changed model spec needs."""

from __future__ import annotations

import numpy as np
import pytest

from tailord.daemon.api import bodies
from tailord.daemon.ctl.client import ClientError
from tailord.daemon.ctl.main import main as tailorctl
from tailord.storage.versions import VersionStore
from tailord.trainer.model import Model
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # a daemon, restarted, and two updates


def test_a_changed_spec_is_said_and_retrained_on_demand(
    daemon: DaemonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.start("--head", "knn")
    for label, vectors in clusters(np.random.default_rng(0), 8).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    wait_for(lambda: daemon.version() >= 1, timeout=90)
    with daemon.client() as client:
        # Every file learned, not only none queued: one may still be settling in the inbox.
        wait_for(lambda: sum(client.status().samples.get("learned", {}).values()) == 16, timeout=60)
        assert client.status().spec_change is None
    learned = daemon.version()
    assert daemon.stop() == 0

    daemon.start("--head", "linear", "--quiet-seconds", "3600")
    log = daemon.log.read_text()
    assert "tailorctl update --from base" in log
    assert "head=linear" in log
    with daemon.client() as client:
        status = client.status()
        assert status.version == learned  # the old model keeps serving until asked
        assert status.spec_change is not None
        assert "tailorctl update --from base" in status.spec_change
        with pytest.raises(ClientError, match="Nothing is queued"):
            client.update()  # nothing queued: from the current version there is nothing to do
    capsys.readouterr()
    assert tailorctl(["--socket", str(daemon.socket), "status"]) == 0
    assert "tailorctl update --from base" in capsys.readouterr().out

    code = tailorctl(
        ["--socket", str(daemon.socket), "--json", "update", "--from", "base", "--wait"]
    )
    done = capsys.readouterr().out
    assert code == 0, done
    with daemon.client() as client:
        info = client.update_info(client.status().last_update.id)  # type: ignore[union-attr]
        assert info.from_ == "base"
        assert info.state == "succeeded"
        assert client.status().spec_change is None
        unseen = clusters(np.random.default_rng(1), 4)
        answer = client.predict([v.tolist() for v in unseen["cat"] + unseen["dog"]])
    assert answer.version == info.version
    assert answer.version > learned
    assert [p.label for p in answer.predictions] == ["cat"] * 4 + ["dog"] * 4
    model = Model.from_bytes(VersionStore(daemon.data_dir).read(answer.version).weights)
    assert model.spec.head == "linear"
    assert model.sample_count == 16  # every learned sample, relearned


def test_from_base_with_nothing_learned_is_refused(daemon: DaemonProcess) -> None:
    daemon.start("--quiet-seconds", "3600")
    with daemon.client() as client, pytest.raises(ClientError, match="retraining from base"):
        client.update(bodies.UpdateRequest(from_="base"))
