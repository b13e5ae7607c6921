"""Writing a response on the wire: its status line, headers and Date, and the transport's
own answers (a full server, a peer not allowed)."""

from __future__ import annotations

import email.utils
import time
from http import HTTPStatus

from tailord.daemon.http.wire import Response, error_response


def encode(response: Response, keep_alive: bool, head: bool) -> bytes:
    """The response's head and body as one write (one system call, one read for the
    client); no body for a HEAD request. A stream's chunks follow it."""
    lines = [
        f"HTTP/1.1 {response.status} {_phrase(response.status)}",
        "Server: tailord",
        f"Date: {_http_date()}",
        f"Content-Type: {response.content_type}",
    ]
    if response.stream is None:
        lines.append(f"Content-Length: {len(response.body)}")
    lines += [f"{key}: {value}" for key, value in response.headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    body = b"" if head else response.body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def forbidden(uid: int) -> Response:
    return error_response(
        403,
        "forbidden",
        f"uid {uid} may not use tailord; add the user to [api] allowed_users "
        "(or a group of theirs to allowed_groups) and restart",
    )


_BUSY_BODY = (
    b'{"error":{"code":"busy","message":"tailord serves as many connections as it may '
    b'([api] max_connections); connect again in a moment"}}\n'
)
# Written as is to a connection over the cap, which is then closed unread.
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: tailord\r\n"
    b"Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\n\r\n".encode()
    + _BUSY_BODY
)

_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _phrase(status: int) -> str:
    return _PHRASES.get(status, "Unknown")


_date_cache: tuple[int, str] = (0, "")  # (Unix second, its Date header); swapped whole


def _http_date() -> str:
    # Formatting the Date header is a visible share of a tiny request: once a second.
    global _date_cache  # noqa: PLW0603 (one reference swapped: no lock needed)
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text
