"""Publishing a version: the ordered, crash-safe steps; version 0.

The flip of ``current`` is the commit point of a publish. The start-up reconciliation rule
(reconcile.py, docs/versions.md) follows from it:

- a version folder with no row that ``current`` points at was published, and the daemon
  stopped before the row was committed: its row is made from its manifest, and the samples it
  lists in ``samples.txt`` are marked learned by it;
- a version folder with no row that ``current`` does not point at never became current: it is
  deleted, and its samples stay queued;
- a row whose folder is gone is marked removed (the row stays: samples refer to it);
- ``current`` pointing at a missing or corrupt version falls back, loudly, to the nearest valid
  ancestor (else the newest valid version); the samples learned by the broken versions are
  queued again so that the next update relearns them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tailord.daemon.api import bodies
from tailord.daemon.errors import ConfigError
from tailord.daemon.versions.serving import Serving
from tailord.storage.crash import crash_point
from tailord.storage.db import Database
from tailord.storage.models import Version, VersionEvent
from tailord.storage.samples import mark_learned
from tailord.storage.versions import WEIGHTS, VersionStore
from tailord.trainer.errors import ModelError
from tailord.trainer.loading import base_model, load_model
from tailord.trainer.spec import ModelSpec

logger = logging.getLogger(__name__)


class ManifestFields(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a publish writes into ``manifest.json`` besides ``version``, ``parent``,
    ``created_at`` (added here) and ``files``, ``published_at`` (added by the store).

    Optional fields left at their default are not written: a base version's manifest has no
    ``update`` key rather than ``"update": null`` (docs/versions.md lists every key).
    """

    spec: ModelSpec
    labels: list[str]  # in index order
    sample_count: int  # k-NN: rows of its memory; trained heads: samples seen
    metrics: bodies.UpdateMetrics  # written even when empty: readers expect the key
    samples_in_update: int | None = None  # new samples the update that made it learned
    update: int | None = None  # that update's id
    gate: bodies.Gate | None = None  # its gate's decision and figures
    imported: bool = False  # made by `tailorctl import-base`
    from_base: bool = False  # retrained from version 0 on every sample learned before it
    base_file: str | None = None  # version 0 from `[versions] base`


def next_number(store: VersionStore, db: Database) -> int:
    """One more than any version number ever used (rows outlive their folders)."""
    with db.read() as session:
        highest = session.scalar(select(func.max(Version.number)))
    used = [*store.numbers(), *([] if highest is None else [highest])]
    return max(used) + 1 if used else 0


def publish(
    store: VersionStore,
    db: Database,
    serving: Serving | None,
    *,
    staging_name: str,
    number: int | None = None,
    parent: int | None,
    manifest: ManifestFields,
    sample_ids: Sequence[int] = (),
    read_at: float | None = None,
    event: Literal["published", "base", "import"] = "published",  # its version_events row
    record: Callable[[Session, int], None] | None = None,
) -> int:
    """Publish the candidate in ``staging/<staging_name>`` as a version, make it current.

    Order: folder published and fsynced → the new version loaded and warmed up (the old one
    still serving) → ``current`` flipped → row committed and samples marked learned → served
    by one assignment. A failure before the flip removes the candidate and leaves the old
    version current; a crash between the flip and the commit is repaired by
    :func:`reconcile`. ``number`` None takes the next free number. Samples relabeled at or
    after ``read_at`` stay queued (see mark_learned). ``record`` runs in the
    commit's transaction, with the number (the update's own row). Returns the number.
    """
    with store.lock:
        before = store.current_number()
        if number is None:
            number = next_number(store, db)
        full = {"parent": parent, "created_at": time.time(), **msgspec.to_builtins(manifest)}
        store.publish(store.staging_dir / staging_name, number, full)
        try:
            prepared = None if serving is None else serving.prepare(store, number)
            stored = store.read(number)
            store.set_current(number)
        except BaseException:
            # Abandon the candidate; the old version stays (or becomes again) current.
            if before is not None and store.current_number() != before:
                store.set_current(before)
            store.discard(number)
            raise
        crash_point("flipped")
        with db.write() as session:
            session.add(
                Version(
                    number=number,
                    parent=parent,
                    sample_count=manifest.sample_count,
                    manifest=stored.manifest,
                )
            )
            session.add(VersionEvent(kind=event, version=number, previous=parent))
            mark_learned(session, sample_ids, number, read_at=read_at)
            if record is not None:
                record(session, number)
        crash_point("committed")
        if serving is not None and prepared is not None:
            serving.swap(prepared)
    return number


def ensure_base(
    store: VersionStore, db: Database, spec: ModelSpec, base_file: Path | None = None
) -> int:
    """Create version 0: the spec's standard model, or the pretrained ``base_file``."""
    if base_file is not None:
        try:
            model = load_model(base_file.read_bytes())
        except (OSError, ModelError) as exc:
            raise ConfigError(
                f"[versions] base {base_file} cannot be used as the base model: {exc}"
            ) from exc
        if model.spec != spec:
            raise ConfigError(
                f"the base model {base_file} is built as {model.spec.to_dict()}, but [model] "
                f"says {spec.to_dict()}; make [model] match the file, or drop [versions] base"
            )
    else:
        model = base_model(spec)
    staging = store.new_staging("base")
    (staging / WEIGHTS).write_bytes(model.to_bytes())
    number = publish(
        store,
        db,
        None,
        staging_name="base",
        number=0,
        parent=None,
        manifest=ManifestFields(
            spec=spec,
            labels=list(model.labels),
            sample_count=model.sample_count,
            metrics=bodies.UpdateMetrics(),
            base_file=None if base_file is None else str(base_file),
        ),
        event="base",
    )
    logger.info("created base version 0 (%s head)", spec.head)
    return number
