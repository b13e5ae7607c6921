"""A daemon serving and updating a vector model never loads torch (docs/architecture.md).

Checked from outside, on the running process: a library the process has loaded is mapped in
``/proc/<pid>/maps``, whoever imported it and however; ``libtorch`` is torch's native core.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for
from tests.e2e.test_update_prewarm import spawned_workers


def torch_mapped(daemon: DaemonProcess) -> bool:
    assert daemon.process is not None
    maps = Path(f"/proc/{daemon.process.pid}/maps").read_text()
    return "libtorch" in maps


def drop_and_learn(daemon: DaemonProcess, per_label: int) -> None:
    before = daemon.version()
    with daemon.client() as client:
        known = sum(client.status().samples.get("learned", {}).values())
    dropped = 0
    for label, vectors in clusters(np.random.default_rng(before), per_label).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{before}-{i}.npy", npy_bytes(vector))
            dropped += 1

    def learned_all() -> bool:
        # Not just a newer version: on a loaded machine the quiet period may end between two
        # drops, and the first update then learns only some of them.
        with daemon.client() as client:
            return sum(client.status().samples.get("learned", {}).values()) == known + dropped

    wait_for(learned_all, timeout=90)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["knn", "linear"])
def test_a_vector_model_is_served_and_updated_without_torch(
    daemon: DaemonProcess, head: str
) -> None:
    daemon.start("--head", head)
    drop_and_learn(daemon, 6)
    drop_and_learn(daemon, 3)  # a second update: loaded on top of a learned version
    unseen = clusters(np.random.default_rng(9), 3)
    with daemon.client() as client:
        answer = client.predict([v.tolist() for v in unseen["cat"] + unseen["dog"]])
        client.status()
        client.versions()
    assert [p.label for p in answer.predictions] == ["cat"] * 3 + ["dog"] * 3
    assert not torch_mapped(daemon)


@pytest.mark.slow
def test_a_knn_update_spawns_no_worker(daemon: DaemonProcess, short_tmp: Path) -> None:
    config = short_tmp / "t.toml"
    config.write_text("[worker]\nprewarm = true\n")  # not for a head that needs none
    daemon.start("--config", str(config))
    drop_and_learn(daemon, 4)
    assert daemon.process is not None
    assert spawned_workers(daemon.process.pid) == set()
    with daemon.client() as client:
        last = client.status().last_update
    assert last is not None
    assert last.state == "succeeded"


@pytest.mark.slow
def test_an_image_model_does_load_torch(daemon: DaemonProcess, short_tmp: Path) -> None:
    """The check above can fail: a backbone that needs torch shows it in the maps."""
    config = short_tmp / "t.toml"
    config.write_text('[model]\nbackbone = "image"\nhead = "knn"\nimage_size = 16\n')
    daemon.start("--config", str(config))
    assert torch_mapped(daemon)


# `import torch` fails in this interpreter, as where torch is not installed.
WITHOUT_TORCH = (
    "import sys; sys.modules['torch'] = None; "
    "from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())"
)


def without_torch(daemon: DaemonProcess, *extra: str) -> list[str]:
    argv = daemon.argv(*extra)
    argv[2] = WITHOUT_TORCH
    return argv


@pytest.mark.slow
def test_the_default_model_needs_no_torch_installed(daemon: DaemonProcess) -> None:
    with daemon.log.open("ab") as log:
        daemon.process = subprocess.Popen(without_torch(daemon), stdout=log, stderr=log)
    wait_for(daemon._answers, timeout=60)
    drop_and_learn(daemon, 4)
    unseen = clusters(np.random.default_rng(5), 2)
    with daemon.client() as client:
        answer = client.predict([v.tolist() for v in unseen["cat"] + unseen["dog"]])
    assert [p.label for p in answer.predictions] == ["cat"] * 2 + ["dog"] * 2


def test_a_head_that_needs_torch_says_how_to_install_it(daemon: DaemonProcess) -> None:
    done = subprocess.run(
        without_torch(daemon, "--head", "linear"),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "pip install 'tailord[torch]'" in done.stderr
    assert "Traceback" not in done.stderr
