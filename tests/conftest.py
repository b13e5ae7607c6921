"""Shared fixtures: a real ``tailord serve`` process on temporary folders."""

from __future__ import annotations

import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.ctl.client import Client, ClientError


def wait_for(
    predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.1
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@dataclass
class DaemonProcess:
    """A ``tailord serve`` subprocess and its folders."""

    root: Path
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "s.sock"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def argv(self, *extra: str) -> list[str]:
        """The ``tailord serve`` command line on this daemon's folders; ``extra`` flags last."""
        return [
            sys.executable,
            "-c",
            "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--inbox",
            str(self.inbox),
            "--socket",
            str(self.socket),
            "--quiet-seconds",
            "0.5",
            *self.extra_args,
            *extra,
        ]

    def start(self, *extra: str) -> DaemonProcess:
        # The child holds its own copy of the descriptor; ours is closed at once.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(*extra), stdout=log, stderr=log, cwd=self.root
            )
        wait_for(self._answers, timeout=60)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"tailord exited early:\n{self.log.read_text()}")
        try:
            with self.client() as client:
                client.version()
        except ClientError:
            return False
        return True

    def client(self) -> Client:
        return Client(self.socket, timeout=30)

    def version(self) -> int:
        with self.client() as client:
            return client.version().version

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def close(self) -> None:
        """Stop it as systemd would, so that its coverage data is written (a SIGKILLed
        process writes none); kill it if it does not stop in time."""
        if self.process is None:
            return
        try:
            self.stop(signal.SIGTERM, timeout=10)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)

    def drop(self, label: str, name: str, data: bytes) -> Path:
        """Write a sample the Maildir way: a dot-file first, then a rename into place."""
        folder = self.inbox / label
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}"
        tmp.write_bytes(data)
        final = folder / name
        os.rename(tmp, final)
        return final


CHECKOUT = Path(__file__).resolve().parent.parent


def require_others_may_enter_the_checkout() -> None:
    """Fail, saying what to do, unless other users may enter every folder down to this
    checkout: the tests that run tailord (or Python) as another user read the checkout and
    its .venv, and in a 0700 folder (``mktemp -d``) they would fail for reasons of their own."""
    for folder in (*reversed(CHECKOUT.parents), CHECKOUT):
        if not folder.stat().st_mode & stat.S_IXOTH:
            pytest.fail(
                f"{folder} is mode {stat.S_IMODE(folder.stat().st_mode):o}: other users may "
                "not enter it, and this test runs as another user that reads the checkout; "
                f"clone into a folder they may enter, or run: chmod o+x {folder}"
            )


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path: Unix socket paths must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(short_tmp)
    yield proc
    proc.close()


def npy_bytes(vector: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vector, allow_pickle=False)
    return buffer.getvalue()


def clusters(rng: np.random.Generator, n: int, dim: int = 8) -> dict[str, list[np.ndarray]]:
    """Two well-separated labelled clusters."""
    centers = {"cat": np.full(dim, 2.0), "dog": np.full(dim, -2.0)}
    centers["dog"][::2] = 2.0  # not antipodal, so cosine and euclidean both separate them
    return {
        label: [(c + rng.normal(0, 0.3, dim)).astype(np.float32) for _ in range(n)]
        for label, c in centers.items()
    }
