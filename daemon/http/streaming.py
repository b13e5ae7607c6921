"""A response body of unknown length (server-sent events), pumped by a thread of its own.

The stream's iterator may block for long between chunks, so it runs on its own thread, which
hands each chunk to the event loop; the connection ends when the stream does (that is what
ends such a body for the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

# A server-sent event client that stops reading is dropped once this much waits for it.
MAX_STREAM_BACKLOG = 1 << 20


def start_pump(
    chunks: Iterator[bytes],
    loop: asyncio.AbstractEventLoop,
    write: Callable[[bytes], None],
    closed: Callable[[], bool],
    end: Callable[[], None],
) -> None:
    """Hand each chunk to ``write`` on the loop until the stream ends or ``closed()``
    says the connection has; then ``end`` on the loop."""
    threading.Thread(
        target=_pump, args=(chunks, loop, write, closed, end), name="tailord-sse", daemon=True
    ).start()


def _pump(
    chunks: Iterator[bytes],
    loop: asyncio.AbstractEventLoop,
    write: Callable[[bytes], None],
    closed: Callable[[], bool],
    end: Callable[[], None],
) -> None:
    try:
        for chunk in chunks:
            if closed():
                break
            loop.call_soon_threadsafe(write, chunk)
    except RuntimeError:
        pass  # the loop has closed: the server stopped
    finally:
        close_stream(chunks)  # runs the generator's cleanup (unsubscribes) at once
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped
            loop.call_soon_threadsafe(end)


def close_stream(stream: Iterator[bytes] | None) -> None:
    """Run a stream's cleanup (a generator's ``finally``) now, if it has one."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()
