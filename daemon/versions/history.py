"""Version history: keep the last K plus pinned ones, roll back, pin, import a base model.

Rollback makes an existing version current again by a new flip of ``current``: its number
stays the same, and a ``rollback`` row in ``version_events`` records it. Samples learned by
the versions rolled back from stay learned by those versions (which stay in the history, so
rolling forward again is one more rollback); the next update starts from the version rolled
back to and learns only what is queued. See docs/versions.md.

Garbage collection has one owner, :class:`History`: old folders are removed when ``current``
gets a new version (after every publish: an update's, an import's) or a version may go (after
an unpin), and once at start-up (:meth:`History.start`), where a changed ``[versions] keep``
takes effect. A rollback removes nothing: it only flips ``current`` to a version kept already.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from tailord.daemon.api import bodies
from tailord.daemon.errors import TailordError
from tailord.daemon.events import EventBus, VersionChanged
from tailord.daemon.versions.info import ManifestView
from tailord.daemon.versions.publish import ManifestFields, publish
from tailord.daemon.versions.serving import Serving
from tailord.storage.db import Database
from tailord.storage.errors import VersionNotFound
from tailord.storage.models import Version, VersionEvent
from tailord.storage.versions import WEIGHTS, VersionStore
from tailord.trainer.errors import ModelError
from tailord.trainer.loading import load_model
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)


class HistoryError(TailordError):
    """That cannot be done to the version history; `tailorctl versions` shows what there is."""


def collect_garbage(store: VersionStore, db: Database, keep: int) -> list[int]:
    """Remove the folders of versions beyond the newest ``keep``, except pinned ones, current
    and its parent; their rows stay, marked removed. Returns the removed numbers."""
    removed: list[int] = []
    with store.lock:
        current = store.current_number()
        with db.read() as session:
            alive = list(
                session.scalars(
                    select(Version)
                    .where(Version.removed_at.is_(None))
                    .order_by(Version.number.desc())
                )
            )
        parents = {v.number: v.parent for v in alive}
        protected = {v.number for v in alive[:keep]} | {v.number for v in alive if v.pinned}
        for number in (current, parents.get(current) if current is not None else None):
            if number is not None:
                protected.add(number)
        for version in alive:
            if version.number in protected:
                continue
            store.discard(version.number)
            with db.write() as session:
                row = session.get_one(Version, version.number)
                row.removed_at = time.time()
                session.add(VersionEvent(kind="removed", version=version.number, previous=None))
            removed.append(version.number)
    if removed:
        logger.info("removed old version(s) %s ([versions] keep = %d)", removed, keep)
    return removed


class History:
    """The daemon's operations on versions; the API and ``tailorctl`` call these."""

    def __init__(
        self,
        store: VersionStore,
        db: Database,
        serving: Serving,
        events: EventBus,
        spec: ModelSpec,
        keep: int,
    ) -> None:
        self.store = store
        self.db = db
        self.serving = serving
        self.events = events
        self.spec = spec
        self.keep = keep

    def start(self) -> None:
        """At start-up, once the current version serves: apply ``[versions] keep``."""
        collect_garbage(self.store, self.db, self.keep)

    def publish(
        self,
        *,
        staging_name: str,
        parent: int,
        manifest: ManifestFields,
        sample_ids: Sequence[int],
        read_at: float,
        record: Callable[[Session, int], None],
        announce: Callable[[int], None],
    ) -> int:
        """Publish an update's candidate (see :func:`publish`) and remove old versions.

        ``record`` runs in the publish's transaction; ``announce`` right after it is served
        (the update's own event), before ``version.changed`` and the removal of old folders.
        """
        number = publish(
            self.store,
            self.db,
            self.serving,
            staging_name=staging_name,
            parent=parent,
            manifest=manifest,
            sample_ids=sample_ids,
            read_at=read_at,
            record=record,
        )
        announce(number)
        self.events.publish(VersionChanged(version=number, parent=parent))
        collect_garbage(self.store, self.db, self.keep)
        return number

    def rollback(self, number: int | None = None) -> bodies.RollbackResult:
        """Make ``number`` (default: the current version's parent) current again."""
        with self.store.lock:
            current = self.store.current_number()
            if number is None:
                parent = self._row(current).parent if current is not None else None
                if parent is None:
                    raise HistoryError(
                        f"version {current} has no parent to roll back to; "
                        "name a version: `tailorctl rollback N`"
                    )
                number = parent
            self._row(number)
            if number == current:
                return bodies.RollbackResult(number, current, changed=False)
            served = self.serving.prepare(self.store, number)  # raises LoadFailed
            self.store.set_current(number)
            with self.db.write() as session:
                session.add(VersionEvent(kind="rollback", version=number, previous=current))
            self.serving.swap(served)
        logger.warning("rolled back from version %s to version %d", current, number)
        self.events.publish(VersionChanged(version=number, previous=current, reason="rollback"))
        return bodies.RollbackResult(number, current, changed=True)

    def pin(self, number: int, pinned: bool = True) -> bodies.PinResult:
        """Keep ``number`` whatever ``[versions] keep`` says (or stop keeping it)."""
        with self.store.lock, self.db.write() as session:
            row = self._alive(session.get(Version, number), number)
            row.pinned = pinned
            session.add(VersionEvent(kind="pin" if pinned else "unpin", version=number))
        if not pinned:
            collect_garbage(self.store, self.db, self.keep)
        return bodies.PinResult(number, pinned)

    def listing(self) -> list[bodies.VersionInfo]:
        """Every version ever published, oldest first, as ``GET /v1/versions`` lists it."""
        current = self.store.current_number()
        with self.db.read() as session:
            rows = list(session.scalars(select(Version).order_by(Version.number)))
        return [_entry(row, current) for row in rows]

    def detail(self, number: int) -> bodies.VersionDetail | None:
        """One version and its manifest (``GET /v1/versions/{n}``); None if there is none."""
        current = self.store.current_number()
        with self.db.read() as session:
            row = session.get(Version, number)
        if row is None:
            return None
        entry = msgspec.structs.asdict(_entry(row, current))
        return bodies.VersionDetail(**entry, manifest=dict(row.manifest))

    def import_base(self, data: bytes) -> bodies.ImportResult:
        """Publish a pretrained safetensors model as a new version whose parent is current."""
        try:
            model = load_model(data)
        except ModelError as exc:
            raise HistoryError(f"the file is not a usable tailord model: {exc}") from exc
        if model.spec != self.spec:
            raise HistoryError(
                f"the model is built as {model.spec.to_dict()}, but this daemon's [model] "
                f"is {self.spec.to_dict()}; import a model made with the same [model] settings"
            )
        with self.store.lock:
            parent = self.store.current_number()
            staging = self.store.new_staging(f"import-{time.monotonic_ns()}")
            (staging / WEIGHTS).write_bytes(data)
            number = publish(
                self.store,
                self.db,
                self.serving,
                staging_name=staging.name,
                parent=parent,
                manifest=ManifestFields(
                    spec=model.spec,
                    labels=list(model.labels),
                    sample_count=model.sample_count,
                    metrics=bodies.UpdateMetrics(),
                    imported=True,
                ),
                event="import",
            )
        logger.info("imported a base model as version %d", number)
        self.events.publish(VersionChanged(version=number, parent=parent, reason="import"))
        collect_garbage(self.store, self.db, self.keep)
        return bodies.ImportResult(number, parent)

    def _row(self, number: int | None) -> Version:
        with self.db.read() as session:
            return self._alive(None if number is None else session.get(Version, number), number)

    @staticmethod
    def _alive(row: Version | None, number: int | None) -> Version:
        if row is None:
            raise VersionNotFound(f"there is no version {number}; `tailorctl versions` lists them")
        if row.removed_at is not None:
            raise VersionNotFound(
                f"version {number} was removed (only the newest [versions] keep versions and "
                "pinned ones are kept); pin versions you may want to roll back to"
            )
        return row


def _entry(row: Version, current: int | None) -> bodies.VersionInfo:
    manifest = _view(row.manifest)
    return bodies.VersionInfo(
        number=row.number,
        parent=row.parent,
        created_at=row.created_at,
        sample_count=row.sample_count,
        current=row.number == current,
        labels=manifest.labels,
        metrics=manifest.metrics,
        update=manifest.update,
        pinned=row.pinned,
        removed=row.removed_at is not None,
    )


def _view(manifest: object) -> ManifestView:
    """The labels and metrics of a stored manifest; one that does not fit reads as empty
    (a listing must not fail on one odd row: the version's files are checked on load)."""
    try:
        return msgspec.convert(manifest, ManifestView)
    except msgspec.ValidationError:
        logger.warning("a version's manifest has unexpected labels or metrics; listing none")
        return ManifestView()
