"""schemathesis against the real socket, as a user would run it: through a TCP bridge.

schemathesis speaks HTTP over TCP (``requests``), so a small asyncio forwarder on 127.0.0.1
(started here: CI needs no socat) carries each connection to the daemon's Unix socket. Every
operation of the generated OpenAPI document but the endless event stream is called with
generated data; no answer may be a server error, each must conform to its schema, and data
the document allows may not be refused as invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tailord.daemon.api.openapi import openapi_document
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

DIM = 4
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path="/v1/events")


class TcpBridge:
    """Forwards each TCP connection on 127.0.0.1 to a Unix socket, on its own event loop."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="tcp-bridge", daemon=True)

    def __enter__(self) -> TcpBridge:
        self._thread.start()
        assert self.ready.wait(10), "the bridge did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._forward, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self._server.close()
            self.loop.run_until_complete(self._server.wait_closed())
            self.loop.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            writer.close()


_MODEL_DEPENDENT = ("/v1/predict", "/v1/samples", "/v1/samples/requeue")


def allowed_data_is_taken(ctx: object, response: object, case: schemathesis.Case) -> None:
    """What the document allows, the server takes: no 400 or 422 for parameters and bodies
    its schemas accept (they disagreed on whole-number floats, null and maxima). Left out
    is what a schema cannot say: an input's length (or a sample's) must match the model's
    (predict, adding samples), and requeue needs at least one of its keys."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return  # data meant to be invalid (the coverage phase draws some): refusing is right
    status = getattr(response, "status_code", 0)
    if status in (400, 422) and case.operation.path not in _MODEL_DEPENDENT:
        raise AssertionError(
            f"{case.method} {case.formatted_path} was refused ({status}) though the document "
            f"allows it: query {case.query}, body {case.body!r}"
        )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A daemon with a learned version (so predictions can succeed), behind a bridge."""
    root = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    proc = DaemonProcess(root).start("--quiet-seconds", "3600")
    try:
        for label, vectors in clusters(np.random.default_rng(0), 3, dim=DIM).items():
            for i, vector in enumerate(vectors):
                proc.drop(label, f"{i}.npy", npy_bytes(vector))
        with proc.client() as client:
            wait_for(lambda: client.status().queued == 6)
            assert client.update(wait=True, timeout=120).state == "succeeded"
        with TcpBridge(proc.socket) as bridge:
            yield f"http://127.0.0.1:{bridge.port}"
    finally:
        if proc.process is not None:
            proc.stop(signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
# A raw .npy body's schema is "any bytes": there is nothing for schemathesis to generate from
# it (tests/daemon/test_api_schema.py sends real .npy files).
@pytest.mark.filterwarnings("ignore:Skipped test cases with unsupported payload media types")
@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same draws on every run: CI stays reproducible
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_finds_no_violation(base_url: str, case: schemathesis.Case) -> None:
    if case.query and str(case.query.get("wait", "")).lower() in ("true", "1", "yes"):
        case.query["timeout"] = 5  # nothing is queued, but never let a draw block for long
    case.call_and_validate(
        base_url=base_url,
        timeout=30,
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
            allowed_data_is_taken,
        ],
    )
