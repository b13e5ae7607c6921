"""After the gate: the published candidate learns the held-out samples too.

A memory head (knn, auto) appends them: it keeps every shot, and appending is cheap.
A trained head is refitted, as follows.

With few shots the holdout costs what the user gave: 8 shots of an intent keep 7 for
training (``holdout`` 0.2, rounded down), and a trained head that never saw the eighth is
published. Measured on BANKING77 (docs/benchmarks.md, "Real text"), training on all 8 once
the judged candidate passed is worth up to +0.4 points of test accuracy for ``linear``.

The safety property stays: the judged candidate (trained without the held-out samples) must
pass the gate first, so a candidate worse on held-out or canary data is never promoted.
Then the same training (same starting model, replay, parameters and seed) runs again on the
new samples *with* the held-out ones, and that refitted candidate must pass the canary check
too; if it does not, the judged candidate is published instead. It cannot be judged on the
held-out samples (it learned them): the judged candidate stands for it there.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tailord.trainer.gate import GateParams, GateResult, canary_check
from tailord.trainer.loading import ServedModel
from tailord.trainer.model import Model
from tailord.trainer.spec import UpdateParams
from tailord.trainer.update import run_update

logger = logging.getLogger(__name__)

Labelled = tuple[npt.NDArray[np.float32], Sequence[str]]


def learn_held_out(
    model: Model,
    judged: Model,
    current: ServedModel,
    verdict: GateResult,
    train: Labelled,
    holdout: Labelled,
    replay: Labelled,
    canary: Labelled,
    params: UpdateParams,
    gate: GateParams,
) -> tuple[Model, GateResult]:
    """The model to publish once ``judged`` has been judged, and the verdict that says so.

    ``model`` is what ``judged`` was trained from; ``train``, ``replay`` and ``canary`` are
    the rows it was trained and judged with. A rejected candidate is returned as it is.
    """
    if (gate.enabled and not verdict.promote) or len(holdout[1]) == 0:
        return judged, verdict
    if judged.spec.head in ("knn", "auto"):
        empty = np.zeros((0, holdout[0].shape[1]), np.float32)
        return run_update(judged, holdout[0], holdout[1], empty, [], params), verdict
    if not gate.refit:
        return judged, verdict
    started = time.monotonic()
    rows = np.concatenate([train[0], holdout[0]]) if len(train[1]) else holdout[0]
    labels = [*train[1], *holdout[1]]
    refitted = run_update(model, rows, labels, replay[0], replay[1], params)
    # The held-out check is the judged candidate's (passed); the canary one is re-run.
    check = canary_check(refitted, current, canary, gate)
    logger.info(
        "refitted on %d new samples (%d held out) in %.2fs: %s",
        len(labels),
        len(holdout[1]),
        time.monotonic() - started,
        check.reason,
    )
    if not check.passed:
        note = (
            f"; the refit with the held-out samples failed its canary check ({check.reason}): "
            "the judged candidate is published"
        )
        return judged, dataclasses.replace(verdict, reason=verdict.reason + note)
    note = (
        f"; published refitted on all {len(labels)} new samples, held-out ones included "
        f"({check.reason})"
    )
    return refitted, dataclasses.replace(verdict, reason=verdict.reason + note)
