"""*API*: what a user steers beyond "update now": an update's own parameters, cancelling
one, requeueing samples, adding samples over the socket. The handlers call these."""

from __future__ import annotations

import logging
import pwd

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.api.context import ApiContext
from tailord.daemon.api.params import ApiError, whole_floats
from tailord.daemon.http.auth import Peer
from tailord.daemon.http.wire import Request
from tailord.daemon.updates.overrides import BadParameters, asked
from tailord.storage.requeue import requeue as storage_requeue
from tailord.storage.states import SampleState

logger = logging.getLogger(__name__)

_PARAMETERS = frozenset(f.name for f in msgspec.structs.fields(bodies.UpdateRequest))


def update_request(request: Request) -> bodies.UpdateRequest:
    """``POST /v1/update``'s JSON body (none or ``{}``: the configured parameters)."""
    in_query = sorted(_PARAMETERS & set(request.query))
    if in_query:
        raise ApiError(
            422,
            "bad_parameter",
            f"?{in_query[0]}= is not read: send update parameters as a JSON body, "
            f'for example {{"{in_query[0]}": ...}}',
        )
    if not request.body.strip():
        return bodies.UpdateRequest()
    try:
        table = whole_floats(msgspec.json.decode(request.body))
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON ({exc})") from exc
    if not isinstance(table, dict):
        raise ApiError(
            422, "bad_input", 'send a JSON object of update parameters, for example {"epochs": 3}'
        )
    try:
        return asked(table)
    except BadParameters as exc:
        raise ApiError(422, "bad_parameter", str(exc)) from exc


def who(peer: Peer) -> str:
    """The peer as an update's row names who cancelled it: ``alice (uid 1000)``."""
    try:
        name = pwd.getpwuid(peer.uid).pw_name
    except KeyError:
        return f"uid {peer.uid}"
    return f"{name} (uid {peer.uid})"


def requeue(ctx: ApiContext, request: Request) -> bodies.RequeueResult:
    """``POST /v1/samples/requeue``: the samples matching the body, queued again."""
    try:
        asked = msgspec.json.decode(request.body, type=bodies.RequeueRequest)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "bad_input", f"{exc}; {_REQUEUE_HINT}") from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON ({exc})") from exc
    ids = None if asked.ids is msgspec.UNSET else asked.ids
    label = None if asked.label is msgspec.UNSET else asked.label
    state = None if asked.state is msgspec.UNSET else SampleState(asked.state)
    if ids is None and label is None and state is None:
        raise ApiError(422, "bad_input", f"name the samples: {_REQUEUE_HINT}")
    with ctx.db.write() as session:
        done = storage_requeue(session, ids=ids, label=label, state=state)
    logger.info("requeued %d samples (%d were queued already)", done.requeued, done.already_queued)
    if done.requeued:
        ctx.queued(done.requeued)
    return bodies.RequeueResult(done.requeued, done.already_queued)


_REQUEUE_HINT = 'send {"ids": [1, 2]}, {"label": "cat"} or {"state": "rejected"}'
