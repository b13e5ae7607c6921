"""What a decoded input must meet to become a sample, wherever it came from (an inbox file,
a line of a ``.jsonl`` batch, the socket): its label under the cap, its vector the model's
size."""

from __future__ import annotations

import hashlib

from tailord.daemon.inbox.labels import LabelCap
from tailord.daemon.inbox.layout import Refused
from tailord.storage.samples import NewSample
from tailord.trainer.inputs import Decoded


class SampleChecks:
    """``dim`` is the model's vector size, if known: else the first vector sets it.
    ``labels`` is the cap on distinct labels (None for a regression: targets are numbers)."""

    def __init__(self, dim: int | None, labels: LabelCap | None) -> None:
        self._dim = dim
        self._labels = labels

    def check(self, label: str, decoded: Decoded) -> None:
        """Raises :class:`Refused` with the reason."""
        self.check_dim(decoded)
        if self._labels is not None:
            self._labels.check(label)

    def check_dim(self, decoded: Decoded) -> None:
        if decoded.kind != "vector":
            return
        dim = len(decoded.payload) // 4
        if self._dim is not None and dim != self._dim:
            raise Refused(
                f"has {dim} values but this model takes {self._dim}; "
                "send vectors of the model's size"
            )
        self._dim = self._dim or dim


def new_sample(label: str, decoded: Decoded, source: str, size: int) -> NewSample:
    """The sample to store, keyed by its payload's sha256."""
    payload = decoded.payload
    return NewSample(
        hashlib.sha256(payload).hexdigest(), label, decoded.kind, payload, source, size
    )
