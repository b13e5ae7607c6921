"""Forgetting samples, exactly: out of the database, out of every version, off the disk.

In order, on the main loop's thread (so no update runs meanwhile):

1. find the samples (by id, sha256 or label) and the kept versions that learned any of them
   (:func:`holders`); refuse if one is pinned, unless ``force``;
2. delete their rows and cached embeddings, keeping a tombstone (storage/forget.py);
3. if ``current`` learned any, build its successor without them: an update from base on the
   remaining learned samples alone (selection.py, ``learn_queue=False``), with the same spec,
   seed and parameters, so its weights equal those of a daemon that only ever got the
   remaining samples (tests/e2e/test_forget.py); none left: the spec's empty model;
4. remove the folders of the versions that learned them (their rows stay, marked removed),
   clear staging and checkpoints, and compact the database.

Stopped between 2 and 4 (a SIGTERM during the rebuild, a crash), it is finished at the next
start-up (:meth:`Forgetter.finish_interrupted`): the tombstones name the samples, and the
versions' ``samples.txt`` the versions that learned them.

It never takes longer than one full retrain plus a VACUUM.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from tailord.daemon.api import bodies
from tailord.daemon.errors import TailordError
from tailord.daemon.events import EventBus, SamplesForgotten, VersionChanged
from tailord.daemon.updates.updater import Updater
from tailord.daemon.versions.history import History
from tailord.daemon.versions.publish import ManifestFields, publish
from tailord.storage.db import Database
from tailord.storage.forget import compact, erase, find
from tailord.storage.models import Sample, SampleState, Tombstone, Version, VersionEvent
from tailord.storage.versions import SAMPLES_FILE, WEIGHTS, VersionStore
from tailord.trainer.loading import base_model
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)


class NothingToForget(TailordError):
    """No sample matches; `tailorctl samples` lists them with their ids and labels."""


class ForgetRefused(TailordError):
    """A pinned version learned these samples; unpin it, or forget with --force."""


class ForgetFailed(TailordError):
    """The samples are erased, but no version without them could be built; retry with
    `tailorctl update --from base`, and see the log for the cause."""


def holders(session: Session, learned_in: Collection[int]) -> list[int]:
    """The kept versions that learned a sample first learned by a version in ``learned_in``.

    A version holds what the versions on its parent chain learned, back to one built from
    base, which holds every sample learned before it (a rollback's branches included: more
    than it may have, never less).
    """
    rows = list(session.scalars(select(Version)))
    if not learned_in:
        return []
    parent = {r.number: r.parent for r in rows}
    from_base = {r.number for r in rows if (r.manifest or {}).get("from_base")}
    first = min(learned_in)
    found = []
    for row in rows:
        if row.removed_at is not None:
            continue
        number: int | None = row.number
        seen: set[int] = set()
        while number is not None and number not in seen:
            seen.add(number)
            if number in learned_in or (number in from_base and first < number):
                found.append(row.number)
                break
            if number in from_base:
                break
            number = parent.get(number)
    return sorted(found)


class Forgetter:
    """Runs :meth:`forget` for the API, on the main loop's thread."""

    def __init__(
        self,
        db: Database,
        store: VersionStore,
        history: History,
        updater: Updater,
        events: EventBus,
        spec: ModelSpec,
    ) -> None:
        self.db = db
        self.store = store
        self.history = history
        self.updater = updater
        self.events = events
        self.spec = spec

    def forget(self, request: bodies.ForgetRequest) -> bodies.ForgetResult:
        started = time.monotonic()
        if not (request.ids or request.sha256 or request.label):
            raise NothingToForget("name the samples to forget: ids, sha256 or a label")
        with self.db.read() as session:
            doomed = find(session, request.ids, request.sha256, request.label)
            if not doomed:
                raise NothingToForget()
            learned_in = {d.learned_in for d in doomed if d.learned_in is not None}
            holding = holders(session, learned_in)
            pinned = [n for n in holding if session.get_one(Version, n).pinned]
        if pinned and not request.force:
            raise ForgetRefused(
                f"pinned version(s) {', '.join(map(str, pinned))} learned these samples and "
                "would be removed; unpin them, or forget with force (tailorctl forget --force)"
            )
        with self.db.write() as session:
            erase(session, doomed)
        current, removed = self._purge(holding)
        seconds = time.monotonic() - started
        ids = [d.id for d in doomed]
        logger.warning(
            "forgot %d samples (%d learned); removed version(s) %s; version %s is current (%.2fs)",
            len(ids),
            sum(d.learned_in is not None for d in doomed),
            removed,
            current,
            seconds,
        )
        self.events.publish(SamplesForgotten(len(ids), removed, current, seconds))
        return bodies.ForgetResult(
            samples=ids,
            learned=sum(d.learned_in is not None for d in doomed),
            versions_removed=removed,
            version=current,
            seconds=seconds,
        )

    def finish_interrupted(self) -> None:
        """At start-up: finish a forget that stopped after its samples were erased (the
        daemon was stopped or killed during the rebuild), so that no kept version goes on
        holding a forgotten sample. Found by the tombstones in the versions' samples.txt."""
        with self.db.read() as session:
            gone = set(session.scalars(select(Tombstone.sha256)))
            if not gone:
                return
            direct = [n for n in self.store.numbers() if self._listed(n) & gone]
            holding = holders(session, direct)
        if not holding:
            return
        logger.warning(
            "version(s) %s still hold forgotten samples (a forget was interrupted); "
            "finishing it now",
            holding,
        )
        current, removed = self._purge(holding)
        self.events.publish(SamplesForgotten(0, removed, current, 0.0))

    def _listed(self, number: int) -> set[str]:
        try:
            return set((self.store.versions_dir / str(number) / SAMPLES_FILE).read_text().split())
        except FileNotFoundError:
            return set()

    def _purge(self, holding: list[int]) -> tuple[int | None, list[int]]:
        """Current rebuilt without the erased samples if it held any, the other holders
        removed, staging and checkpoints emptied, the database compacted."""
        current = self.store.current_number()
        if current in holding:
            current = self._rebuild()
        removed = self._remove([n for n in holding if n != current])
        self.store.clear_staging()
        shutil.rmtree(self.updater.checkpoints, ignore_errors=True)
        compact(self.db)
        return current, removed

    def _rebuild(self) -> int:
        """A new current version built from base on the remaining learned samples."""
        number = self.updater.run("forget", from_base=True, learn_queue=False)
        if number is not None:
            return number
        with self.db.read() as session:
            left = session.scalar(
                select(Sample.id).where(Sample.state == SampleState.LEARNED).limit(1)
            )
        if left is not None:
            raise ForgetFailed()
        return self._publish_empty()

    def _publish_empty(self) -> int:
        """Nothing learned is left: the spec's standard model, as a new version."""
        model = base_model(self.spec)
        with self.store.lock:
            parent = self.store.current_number()
            staging = self.store.new_staging(f"forget-{time.monotonic_ns()}")
            (staging / WEIGHTS).write_bytes(model.to_bytes())
            (staging / SAMPLES_FILE).write_text("")
            number = publish(
                self.store,
                self.db,
                self.history.serving,
                staging_name=staging.name,
                parent=parent,
                manifest=ManifestFields(
                    spec=self.spec,
                    labels=list(model.labels),
                    sample_count=model.sample_count,
                    metrics=bodies.UpdateMetrics(),
                    from_base=True,
                ),
            )
        self.events.publish(VersionChanged(version=number, parent=parent))
        return number

    def _remove(self, numbers: list[int]) -> list[int]:
        removed = []
        with self.store.lock:
            for number in numbers:
                self.store.discard(number)
                with self.db.write() as session:
                    row = session.get_one(Version, number)
                    row.removed_at = time.time()
                    row.pinned = False
                    session.add(
                        VersionEvent(
                            kind="removed",
                            version=number,
                            previous=None,
                            detail="it had learned forgotten samples",
                        )
                    )
                removed.append(number)
        return removed
