"""The README's ``curl --unix-socket`` lines work as written, against a live daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProcess, npy_bytes, wait_for

pytestmark = pytest.mark.slow  # a daemon and an update (or crashes): see scripts/test.sh --fast

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curl_block() -> tuple[str, list[str]]:
    """The ``SOCK=`` line and the curl lines of the README's socket API section."""
    section = README.read_text().split("## The socket API", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's socket API section has no sh block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert lines[0].startswith("SOCK=")
    curls = lines[1:]
    assert curls
    assert all(line.startswith("curl ") and "--unix-socket" in line for line in curls)
    return lines[0], curls


def test_readme_curl_examples_work_as_written(daemon: DaemonProcess) -> None:
    daemon.start("--quiet-seconds", "3600")
    for label, center in (("cat", [1.0, 0.0, 0.0]), ("dog", [0.0, 1.0, 0.0])):
        for i in range(3):
            vector = np.asarray(center, dtype=np.float32) + np.float32(0.01 * i)
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))
    with daemon.client() as client:
        wait_for(lambda: client.status().queued == 6)
    (daemon.root / "sample.npy").write_bytes(npy_bytes(np.asarray([0.9, 0.1, 0.0], np.float32)))

    sock_line, curls = readme_curl_block()
    env = {**os.environ, "TAILORD_SOCKET": str(daemon.socket)}
    for line in curls:
        script = f"{sock_line}\n{line}"
        if "/v1/events" in line:  # endless: read its first line, then stop it
            with subprocess.Popen(
                ["bash", "-c", script], cwd=daemon.root, env=env, stdout=subprocess.PIPE
            ) as stream:
                assert stream.stdout is not None
                assert stream.stdout.readline() == b": tailord events\n"
                stream.terminate()
            continue
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=daemon.root,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (line, done.stderr)
        if "/metrics" in line:
            assert b"tailord_current_version" in done.stdout
            continue
        answer = json.loads(done.stdout)
        assert not isinstance(answer.get("error"), dict), (line, answer)
        if "/v1/predict" in line:
            assert answer["predictions"][0]["label"] == "cat", (line, answer)
        if "/v1/update" in line:
            assert answer["state"] == "succeeded", answer
