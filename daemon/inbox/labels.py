"""How many labels the inbox may bring: ``[ingest] max_labels``, the distinct labels known.

Each label costs the model an output and every answer that lists labels (``/v1/version``,
``/v1/status``, ``/metrics``) a line, so an inbox writer that makes a folder per file could
grow them without end. A sample with a label beyond the cap is refused with a reason saying
so; samples of labels already known are always taken.
"""

from __future__ import annotations

from sqlalchemy import select

from tailord.daemon.inbox.layout import Refused
from tailord.storage.db import Database
from tailord.storage.models import Sample


class LabelCap:
    """The labels of the samples known (in any state), and the cap on adding more.

    Used from the ingest thread only. A label counts once it has been checked, even if its
    sample then fails to commit: the cap is a bound, not a count.
    """

    def __init__(self, limit: int, db: Database) -> None:
        self.limit = limit
        with db.read() as session:
            self.known: set[str] = set(session.scalars(select(Sample.label).distinct()))

    def check(self, label: str) -> None:
        if label in self.known:
            return
        if len(self.known) >= self.limit:
            raise Refused(
                f"label {label[:40]!r} would be one more than the {self.limit} labels tailord "
                "takes ([ingest] max_labels); file it under a label in use, or raise the cap"
            )
        self.known.add(label)
