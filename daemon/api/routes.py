"""The socket API's route table, as data: one :class:`Route` per endpoint.

The router (``handlers.Api``), the OpenAPI document (``openapi.py``), the ``tailorctl``
client's typed methods and docs/api.md's endpoint table (a test compares them) all come from
this list, so an endpoint is added in one place. It imports only the body types: the client
reads it without torch or the service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from msgspec import Struct, field

from tailord.daemon.api import bodies

# Answers any operation can give: the peer check, the body cap, a chunked body.
COMMON_ERRORS: Mapping[int, str] = {
    403: "This user may not use tailord ([api] allowed_users / allowed_groups).",
    411: "The body came without a Content-Length.",
    413: "The body is larger than [api] max_body_bytes.",
}
BAD_PARAMETER = "A parameter is not valid; the message says which."
NO_SUCH_ID = "No such id."


class Route(Struct, frozen=True):
    """One endpoint (a msgspec struct rather than a dataclass: the client loads msgspec
    anyway, and ``dataclasses`` would add to every ``tailorctl`` start).

    ``name`` is the handler's method name on ``Api`` and the client's method name.
    ``response`` is the body type of every status in ``statuses`` (a ``bodies`` struct, or
    ``str`` for a text body of ``media``). ``request`` is the JSON body's type, and
    ``raw_request`` the media types the body may be sent as instead (one file as is).
    ``errors`` are the statuses this route answers besides :data:`COMMON_ERRORS`.
    """

    method: Literal["GET", "POST"]
    path: str
    name: str
    summary: str
    response: object
    answer: str  # what a success answers (its OpenAPI description)
    statuses: tuple[int, ...] = (200,)
    request: type[Struct] | None = None
    request_required: bool = True
    raw_request: tuple[str, ...] = ()
    query: type[Struct] | None = None
    path_params: Mapping[str, str] = field(default_factory=dict)  # name: description
    errors: Mapping[int, str] = field(default_factory=dict)
    media: str = "application/json"

    @property
    def status(self) -> int:
        """The success status of a request that needs no waiting."""
        return self.statuses[0]

    @property
    def pattern(self) -> re.Pattern[str]:
        """Matches this route's paths; each ``{name}`` is one path segment."""
        parts = re.split(r"\{([a-z_]+)\}", self.path)
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
        )
        return re.compile(regex)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/version",
        "version",
        "The version being served",
        bodies.CurrentVersion,
        "The current version.",
        errors={503: "No version is loaded yet."},
    ),
    Route(
        "GET",
        "/v1/status",
        "status",
        "State, queue counts by label, policy reason, last update",
        bodies.Status,
        "The daemon's status.",
    ),
    Route(
        "GET",
        "/v1/versions",
        "versions",
        "Every published version, oldest first",
        bodies.VersionList,
        "The versions.",
    ),
    Route(
        "GET",
        "/v1/versions/{n}",
        "version_info",
        "One version: its manifest and metrics",
        bodies.VersionDetail,
        "The version.",
        path_params={"n": "the version number"},
        errors={400: BAD_PARAMETER, 404: NO_SUCH_ID},
    ),
    Route(
        "POST",
        "/v1/update",
        "update",
        "Start an update now (or join the one pending or running)",
        bodies.UpdateInfo,
        "202: accepted, the update's id and state; 200 (with ?wait=true): the update has ended.",
        statuses=(202, 200),
        request=bodies.UpdateRequest,
        request_required=False,
        query=bodies.UpdateQuery,
        errors={
            400: BAD_PARAMETER,
            409: "Nothing is queued, so there is nothing to learn; or an update is already "
            "pending or running with other parameters.",
            422: "An update parameter is unknown or out of bounds; the message names it.",
        },
    ),
    Route(
        "GET",
        "/v1/updates/{id}",
        "update_info",
        "One update: state, progress, result",
        bodies.UpdateInfo,
        "The update.",
        path_params={"id": "the update id"},
        errors={400: BAD_PARAMETER, 404: NO_SUCH_ID},
    ),
    Route(
        "POST",
        "/v1/updates/{id}/cancel",
        "cancel",
        "Cancel an update: a pending one is dropped, a running one stops at its next "
        "mini-batch; its samples stay queued",
        bodies.UpdateInfo,
        "The update, ended cancelled.",
        path_params={"id": "the update id"},
        errors={
            400: BAD_PARAMETER,
            404: NO_SUCH_ID,
            409: "The update has ended already (or ended otherwise before it could stop).",
        },
    ),
    Route(
        "POST",
        "/v1/rollback",
        "rollback",
        "Make an earlier version current (or the parent of the current one)",
        bodies.RollbackResult,
        "The version now current.",
        request=bodies.RollbackRequest,
        request_required=False,
        errors={
            400: "The body is not JSON.",
            404: "No such version, or it was removed.",
            409: "Rolling back is not possible now; the message says why.",
            422: "The body does not name a version.",
        },
    ),
    Route(
        "POST",
        "/v1/pin",
        "pin",
        "Pin a version: kept whatever [versions] keep says",
        bodies.PinResult,
        "Pinned.",
        request=bodies.VersionRequest,
        errors={
            400: "The body is not JSON.",
            404: "No such version, or it was removed.",
            409: "Not possible now; the message says why.",
            422: "The body does not name a version.",
        },
    ),
    Route(
        "POST",
        "/v1/unpin",
        "unpin",
        "Unpin a version: removed once it is older than [versions] keep",
        bodies.PinResult,
        "Unpinned.",
        request=bodies.VersionRequest,
        errors={
            400: "The body is not JSON.",
            404: "No such version, or it was removed.",
            409: "Not possible now; the message says why.",
            422: "The body does not name a version.",
        },
    ),
    Route(
        "POST",
        "/v1/import-base",
        "import_base",
        "Publish a .safetensors model (made with the same [model] settings) as a new version",
        bodies.ImportResult,
        "The version now current.",
        raw_request=("application/octet-stream",),
        errors={
            409: "The file cannot be loaded as a model of this spec.",
            422: "No body was sent.",
        },
    ),
    Route(
        "POST",
        "/v1/predict",
        "predict",
        "Predict labels (or values) with the current version",
        bodies.Predictions,
        "One prediction per input, in order.",
        request=bodies.PredictRequest,
        raw_request=("application/x-npy", "text/plain", "image/png", "image/jpeg"),
        query=bodies.PredictQuery,
        errors={
            400: "The body is not valid JSON, or ?top is out of range.",
            409: "No version has learned any label yet.",
            413: "Too many inputs or too large a body.",
            415: "The model cannot take a body of this Content-Type.",
            422: "The inputs do not fit the model.",
            503: "No version is loaded yet.",
        },
    ),
    Route(
        "GET",
        "/v1/samples",
        "samples",
        "Sample counts and a page of samples (no payloads), by id",
        bodies.SamplePage,
        "One page.",
        query=bodies.SamplesQuery,
        errors={400: BAD_PARAMETER},
    ),
    Route(
        "POST",
        "/v1/samples",
        "add_samples",
        "Add samples: one raw file with ?label=, or a JSON or JSONL batch; checked, "
        "deduplicated and capped as inbox files are",
        bodies.AddedSamples,
        "Stored (or found stored already): each sample's id and state.",
        statuses=(201,),
        request=bodies.AddRequest,
        raw_request=(
            "application/x-npy",
            "text/plain",
            "image/png",
            "image/jpeg",
            "application/x-ndjson",
        ),
        query=bodies.AddQuery,
        errors={
            400: "The body is not valid JSON, or ?label= is missing for a raw sample.",
            413: "Too large a sample, or too many in one request.",
            415: "The model cannot take a body of this Content-Type.",
            422: "A sample or its label is not valid; the message says which.",
            503: "The queue is at its cap, or the database cannot be written; try again later.",
        },
    ),
    Route(
        "POST",
        "/v1/samples/requeue",
        "requeue",
        "Put samples back in the queue (by ids, label or state), with their current label",
        bodies.RequeueResult,
        "How many were requeued.",
        request=bodies.RequeueRequest,
        errors={
            400: "The body is not JSON.",
            422: "The body names no ids, label or state, or an unknown key.",
        },
    ),
    Route(
        "GET",
        "/v1/events",
        "events",
        "Server-sent events: sample.queued, sample.rejected, update.began, update.progress, "
        "update.judged, update.finished, version.changed",
        str,
        'An endless stream; each `data:` line is one JSON event {"id", "type", "time", "data"}.',
        media="text/event-stream",
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        str,
        "Prometheus text format.",
        media="text/plain",
        errors={503: "Metrics are not set up yet."},
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        "openapi",
        "This document",
        bodies.JsonObject,
        "The OpenAPI 3.1 document.",
    ),
)

BY_NAME: Mapping[str, Route] = {route.name: route for route in ROUTES}
