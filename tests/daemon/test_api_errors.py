"""Every error status over the real socket: JSON {"error": {"code", "message"}}, never a
traceback. (403, 503 and malformed HTTP are in test_server.py.)"""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailord.daemon.ctl.unixhttp import UnixHTTPConnection
from tests.conftest import DaemonProcess


@pytest.fixture(scope="module")
def live() -> Iterator[DaemonProcess]:
    """A fresh daemon: version 0 has learned nothing, nothing is queued."""
    root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    proc = DaemonProcess(root).start("--quiet-seconds", "3600")
    yield proc
    if proc.process is not None:
        proc.close()
    shutil.rmtree(root, ignore_errors=True)


def call(
    live: DaemonProcess, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = UnixHTTPConnection(live.socket, timeout=30)
    try:
        conn.request(
            method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


JSON_TYPE = {"Content_Type": "application/json"}
NPY_TYPE = {"Content_Type": "application/x-npy"}
TEXT_TYPE = {"Content_Type": "text/plain"}
MANY_INPUTS = json.dumps({"inputs": [[1.0]] * 5000}).encode()

CASES = [
    # status, code, request
    (400, "bad_json", ("POST", "/v1/predict", b"{not json", JSON_TYPE)),
    (400, "bad_parameter", ("GET", "/v1/samples?limit=zero", None, {})),
    (400, "bad_parameter", ("GET", "/v1/samples?state=lost", None, {})),
    (400, "bad_parameter", ("GET", "/v1/versions/..%2Fetc", None, {})),
    (400, "bad_parameter", ("POST", "/v1/update?wait=maybe", b"", {})),
    (400, "bad_parameter", ("POST", "/v1/update?timeout=nan", b"", {})),
    (404, "not_found", ("GET", "/v2/version", None, {})),
    (404, "not_found", ("GET", "/v1/versions/42", None, {})),
    (404, "not_found", ("GET", "/v1/updates/42", None, {})),
    (405, "method_not_allowed", ("DELETE", "/v1/version", None, {})),
    (405, "method_not_allowed", ("GET", "/v1/update", None, {})),
    (405, "method_not_allowed", ("PUT", "/v1/versions/0", b"", {})),
    (409, "nothing_queued", ("POST", "/v1/update", b"", {})),
    (409, "nothing_queued", ("POST", "/v1/update?wait=true", b"", {})),
    (409, "cannot_predict", ("POST", "/v1/predict", b'{"inputs": [[1, 2]]}', {})),
    (411, "length_required", ("POST", "/v1/predict", None, {"Transfer_Encoding": "chunked"})),
    (413, "body_too_large", ("POST", "/v1/predict", None, {"Content_Length": str(10**9)})),
    (413, "too_many_inputs", ("POST", "/v1/predict", MANY_INPUTS, {})),
    (415, "unsupported_media_type", ("POST", "/v1/predict", b"1 2 3", TEXT_TYPE)),
    (422, "bad_input", ("POST", "/v1/predict", b'{"inputs": []}', {})),
    (422, "bad_input", ("POST", "/v1/predict", b'{"inputs": [["a"]]}', {})),
    (422, "bad_input", ("POST", "/v1/predict", b'{"inputs": [[1], [1, 2]]}', {})),
    (422, "bad_input", ("POST", "/v1/predict", b"\x93NUMPY", NPY_TYPE)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code", "request_"), CASES, ids=[f"{s}-{c}-{r[1][:30]}" for s, c, r in CASES]
)
def test_error_statuses(
    live: DaemonProcess,
    status: int,
    code: str,
    request_: tuple[str, str, bytes | None, dict[str, str]],
) -> None:
    method, path, body, headers = request_
    if "Content_Length" in headers or "Transfer_Encoding" in headers:
        got, response, data = _send_head_only(live, method, path, headers)
    else:
        got, response, data = call(live, method, path, body, **headers)
    assert got == status, data
    assert response.getheader("Content-Type") == "application/json"
    error = json.loads(data)["error"]
    assert error["code"] == code
    assert len(error["message"]) > 15
    assert "Traceback" not in error["message"]
    if status == 405:
        assert response.getheader("Allow")


def _send_head_only(
    live: DaemonProcess, method: str, path: str, headers: dict[str, str]
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """Headers that announce a body we never send: the server must answer without it."""
    conn = UnixHTTPConnection(live.socket, timeout=30)
    try:
        conn.putrequest(method, path)
        for key, value in headers.items():
            conn.putheader(key.replace("_", "-"), value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(live: DaemonProcess) -> None:
    conn = UnixHTTPConnection(live.socket, timeout=30)
    try:
        for _ in range(20):
            conn.request("GET", "/v1/version")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
        first_socket = conn.sock
        conn.request("GET", "/v1/status")
        conn.getresponse().read()
        assert conn.sock is first_socket
    finally:
        conn.close()


def test_head_answers_without_a_body(live: DaemonProcess) -> None:
    status, response, data = call(live, "HEAD", "/v1/version")
    assert status == 200
    assert data == b""
    assert int(response.getheader("Content-Length", "0")) > 0
