"""Update requests, as rows: a manual one accepted (or joined to the update already pending or
running), and the one the main loop claims to run next, with the parameters each runs with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from tailord.daemon.api import bodies
from tailord.daemon.config import Config
from tailord.daemon.errors import TailordError
from tailord.daemon.updates import overrides
from tailord.daemon.updates.resume import Resume
from tailord.daemon.updates.rows import Ending
from tailord.daemon.updates.selection import Selection, choose, spec_change
from tailord.storage.db import Database
from tailord.storage.models import Update, UpdateState
from tailord.storage.versions import VersionStore

logger = logging.getLogger(__name__)

_ACTIVE = (UpdateState.PENDING, UpdateState.RUNNING)


class ParametersDiffer(TailordError):
    """An update is already pending or running with other parameters; wait for it or cancel it."""


class NothingQueued(TailordError):
    """Nothing is queued, so an update would learn nothing; drop samples into the inbox first."""


def wanted(config: Config, asked: bodies.UpdateRequest | None) -> bodies.UpdateRequest | None:
    """The parameters a request asks for, resolved; None when it gives none (any will do).
    Raises :class:`overrides.BadParameters` for one out of bounds."""
    if asked is None or not overrides.given(asked):
        return None
    return overrides.resolve(config, asked)


def accept(
    session: Session,
    config: Config,
    store: VersionStore,
    wanted: bodies.UpdateRequest | None,
    *,
    from_base: bool,
    deferred: bool,
) -> tuple[Update, bool]:
    """The row that serves a manual request, and whether it is new.

    A request while one is pending or running joins it rather than queueing another (the
    main loop re-checks the policy after every update anyway), unless it asks for other
    parameters: :class:`ParametersDiffer`. One from base joins a pending one (which then runs
    from base) but not a running one from the current version: it waits behind it. Raises
    :class:`NothingQueued` when there is nothing to learn.
    """
    active = session.scalar(
        select(Update).where(Update.state.in_(_ACTIVE)).order_by(Update.id).limit(1)
    )
    if active is not None and wanted is not None and params_of(config, active) != wanted:
        have = params_of(config, active)
        raise ParametersDiffer(
            f"update {active.id} is already {active.state} with other parameters "
            f"({_differences(have, wanted)}); wait for it to end "
            f"(`tailorctl update --show {active.id}`) or cancel it "
            f"(`tailorctl update --cancel {active.id}`), then ask again"
        )
    if from_base and active is not None and not active.from_base:
        if active.state == UpdateState.PENDING:
            active.from_base = True
        else:
            active = session.scalar(
                select(Update).where(Update.state == UpdateState.PENDING).limit(1)
            )
            if active is not None:
                active.from_base = True
    if active is not None and not deferred:
        active.deferred = False  # asked to run now: it no longer waits
    if active is not None:
        return active, False
    current = store.current_number() or 0
    if choose(session, base_version=current, from_base=from_base) is None:
        raise NothingQueued(
            "nothing is learned or queued, so retraining from base would learn "
            "nothing; drop samples into the inbox first"
            if from_base
            else None
        )
    row = Update(
        reason=("requested from base" if from_base else "requested")
        + (", deferred" if deferred else ""),
        deferred=deferred,
        base_version=current,
        state=UpdateState.PENDING,
        params=configured(config) if wanted is None else _stored(wanted),
        from_base=from_base,
    )
    session.add(row)
    session.flush()
    return row, True


def claim(
    db: Database,
    config: Config,
    base: int,
    reason: str,
    *,
    held_by: int | None,
    resume: Resume | None,
    from_base: bool,
    learn_queue: bool,
    finish: Callable[[int, Ending], None],
) -> tuple[int, Selection, bodies.UpdateRequest] | None:
    """The update to run now, marked running: its id, which samples it learns from which
    head (``selection.py``) and its parameters; None when there is none to run.

    A pending request's row runs first; without ``learn_queue`` (forget) none is taken over.
    ``held_by``, the update a cancel held automatic updates back for, keeps a new row from
    being made (but not a forget's). ``finish`` ends a request that finds nothing to learn.
    """
    with db.write() as session:
        # A request accepted through the API already has its row (and id): run that one.
        row = (
            session.scalar(
                select(Update).where(Update.state == UpdateState.PENDING).order_by(Update.id)
            )
            if learn_queue
            else None
        )
        relearn = (
            from_base
            or (row is not None and row.from_base)
            or spec_change(session, base, config.model) is not None
        )
        selection = choose(session, base_version=base, from_base=relearn, learn_queue=learn_queue)
        if resume is not None and selection is not None and not selection.relearn:
            # The expired update's samples, no more: its checkpoint is of those.
            selection = msgspec.structs.replace(
                selection, up_to_id=min(selection.up_to_id, resume.up_to_id)
            )
        if selection is not None and row is not None:
            row.state = UpdateState.RUNNING
            row.started_at = time.time()
            row.base_version = base
            row.from_base = relearn
        # A cancel holds automatic updates back, not a forget's rebuild (no learn_queue).
        elif selection is not None and (held_by is None or not learn_queue):
            row = Update(reason=reason, base_version=base, from_base=relearn)
            session.add(row)
            session.flush()
        if row is not None and row.params is None:  # automatic: the configured ones
            row.params = configured(config)
        if row is not None and selection is not None:
            row.up_to_id = selection.up_to_id
            row.resumed_from = None if resume is None else resume.update_id
        update_id = None if row is None else row.id
        asked = None if row is None else params_of(config, row)
    if selection is None:
        if update_id is not None:  # a request whose samples were learned meanwhile
            finish(
                update_id,
                Ending(
                    UpdateState.FAILED,
                    error="nothing was queued when the update was due to start",
                ),
            )
        return None
    if update_id is None or asked is None:
        logger.info("update %s was cancelled: no update until a new sample", held_by)
        return None
    return update_id, selection, asked


def has_pending(db: Database, *, deferred: bool = True) -> bool:
    """Whether a request is pending; without ``deferred``, one to run now."""
    query = select(Update.id).where(Update.state == UpdateState.PENDING)
    if not deferred:
        query = query.where(Update.deferred.is_(False))
    with db.read() as session:
        return session.scalar(query.limit(1)) is not None


def configured(config: Config) -> dict[str, object]:
    """A row's ``params`` when no request gave any: the configured ones."""
    return _stored(overrides.resolve(config, bodies.UpdateRequest()))


def params_of(config: Config, row: Update) -> bodies.UpdateRequest:
    """The parameters ``row`` runs with (the configured ones for a row from before)."""
    if row.params is None:
        return overrides.resolve(config, bodies.UpdateRequest())
    return msgspec.convert(row.params, bodies.UpdateRequest)


def _stored(resolved: bodies.UpdateRequest) -> dict[str, object]:
    stored: dict[str, object] = msgspec.to_builtins(resolved)
    return stored


def _differences(have: bodies.UpdateRequest, want: bodies.UpdateRequest) -> str:
    """``epochs 10, not 3`` for each key where ``want`` differs from ``have``."""
    old, new = msgspec.structs.asdict(have), msgspec.structs.asdict(want)
    return ", ".join(f"{key} {old[key]}, not {new[key]}" for key in new if old[key] != new[key])
