"""The OpenAPI document and the server agree where schemathesis found them apart, and what
clients send cannot grow ``/metrics`` (a real daemon, over its socket)."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailord.daemon.api.openapi import openapi_document
from tests.conftest import DaemonProcess
from tests.daemon.test_api_errors import call


@pytest.fixture(scope="module")
def live() -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    proc = DaemonProcess(root).start("--quiet-seconds", "3600")
    yield proc
    if proc.process is not None:
        proc.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/pin", b'{"version": 0.0}'),  # JSON Schema's integer includes 0.0
        ("POST", "/v1/unpin", b'{"version": 0.0}'),
        ("GET", "/v1/versions/0.0", None),
        ("GET", "/v1/samples?limit=5.0&after=0.00", None),
    ],
)
def test_whole_number_floats_are_integers(
    live: DaemonProcess, method: str, path: str, body: bytes | None
) -> None:
    status, _, answer = call(live, method, path, body)
    assert status == 200, answer


@pytest.mark.parametrize("bad", [b'{"version": 0.5}', b'{"version": "0"}', b'{"version": -1.0}'])
def test_numbers_that_are_not_whole_or_not_numbers_are_refused(
    live: DaemonProcess, bad: bytes
) -> None:
    assert call(live, "POST", "/v1/pin", bad)[0] == 422


def test_the_document_states_the_largest_id() -> None:
    parameters = openapi_document()["paths"]["/v1/versions/{n}"]["get"]["parameters"]  # type: ignore[index]
    assert parameters[0]["schema"]["maximum"] == 10**18 - 1


def test_the_largest_documented_id_is_looked_up(live: DaemonProcess) -> None:
    assert call(live, "GET", f"/v1/versions/{10**18 - 1}")[0] == 404
    assert call(live, "GET", f"/v1/versions/{10**18}")[0] == 400


def test_method_names_become_at_most_one_metric_label(live: DaemonProcess) -> None:
    for method in ("PROPFIND", "MKCOL", "PURGE", "LOCK", "REPORT", "SEARCH"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(live.socket))
            sock.sendall(f"{method} /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
            while sock.recv(65536):
                pass
    status, _, body = call(live, "GET", "/metrics")
    assert status == 200
    methods = {
        line.split('method="')[1].split('"')[0]
        for line in body.decode().splitlines()
        if line.startswith("tailord_api_request_seconds_count")
    }
    assert methods <= {"GET", "HEAD", "POST", "DELETE", "other"}
    assert "other" in methods, json.dumps(sorted(methods))
