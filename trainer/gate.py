"""The gate: decide whether a candidate may replace the current version.

Two checks, both on samples the candidate was not trained on:
- held-out new samples: the candidate must be at least as accurate as the current version;
- a canary set of earlier samples: its accuracy may drop by at most ``max_regression``, plus
  the set's own sampling noise (:func:`canary_noise`): on 30 canary samples one miss is 3.3
  points, and a sound few-shot candidate was rejected for 4 misses of 30 while the current
  version's 100 % was its accuracy on samples it had trained on (BANKING77, 8 shots:
  docs/benchmarks.md). The allowance shrinks as the set grows, to ``max_regression`` alone.
For a regress model the figure is the mean squared error instead, read as R² points: on
either set, MSE may rise by at most ``max_regression`` times the variance of that set's
targets (R² = 1 - MSE / variance may fall by at most ``max_regression``, as accuracy may on
the canary). Unit-free, like accuracy. The held-out check needs that slack too: MSE is
continuous, and near the noise floor a sound candidate trained on a few new samples lands
above the current's by a ratio that is large but meaningless (0.008 to 0.011), where a strict
"not above" (or a ratio) rejected it, and so its samples.
A check without samples passes (nothing to compare), and says so in its reason.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tailord.trainer.loading import ServedModel

# GateParams lives with the other parameter structs, away from torch, so that loading the
# config does not import torch; it is named here too, where the gate is.
from tailord.trainer.spec import GateParams
from tailord.trainer.targets import target_value

__all__ = [
    "Check",
    "GateParams",
    "GateResult",
    "accuracy",
    "canary_check",
    "canary_noise",
    "evaluate",
    "mse",
    "split_holdout",
]

Rows = npt.NDArray[np.float32]
# One-sided 95 %: a drop this many standard errors above max_regression is not chance.
NOISE_Z = 1.645


@dataclass(frozen=True)
class GateResult:
    promote: bool
    reason: str
    holdout_samples: int
    holdout_candidate: float | None
    holdout_current: float | None
    canary_samples: int
    canary_candidate: float | None
    canary_current: float | None
    metric: str = "accuracy"  # what the four figures are: "accuracy" or "mse" (regress)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def split_holdout(
    labels: Sequence[str], share: float, seed: int, *, per_label: bool = True
) -> list[int]:
    """Indices to hold out: ``share`` of each label's samples, rounded down, seeded.

    A label with too few samples keeps them all for training, so a first shot of a new
    label is always learned. With ``per_label`` False (regress: every target is its own
    "label") it is ``share`` of all the samples, rounded down.
    """
    if not per_label:
        n = int(len(labels) * share)
        return sorted(random.Random(seed).sample(range(len(labels)), n))
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    rng = random.Random(seed)
    held: list[int] = []
    for label in sorted(by_label):
        indices = by_label[label]
        n = int(len(indices) * share)
        held.extend(rng.sample(indices, n) if n else [])
    return sorted(held)


def accuracy(model: ServedModel, rows: Rows, labels: Sequence[str]) -> float | None:
    """Share of ``rows`` (encoded, as run_update takes them) predicted right; None if empty."""
    right = hits(model, rows, labels)
    return None if right is None else sum(right) / len(right)


def hits(model: ServedModel, rows: Rows, labels: Sequence[str]) -> list[bool] | None:
    """Whether each of ``rows`` is predicted right; None if there are none."""
    if len(labels) == 0:
        return None
    if not model.learned:
        return [False] * len(labels)
    predicted = model.predict_encoded(rows)
    return [p.label == y for p, y in zip(predicted, labels, strict=True)]


def canary_noise(candidate: Sequence[bool], current: Sequence[bool]) -> float:
    """How far the candidate's canary accuracy may fall below the current's by chance: a
    one-sided 95 % bound on a paired difference of proportions, ``z * sqrt(b + c) / n``, where
    ``b`` samples only the current gets right and ``c`` only the candidate (McNemar's)."""
    if not candidate:
        return 0.0
    b = sum(cur and not cand for cand, cur in zip(candidate, current, strict=True))
    c = sum(cand and not cur for cand, cur in zip(candidate, current, strict=True))
    return NOISE_Z * math.sqrt(b + c) / len(candidate)


@dataclass(frozen=True)
class Check:
    """One set's verdict: whether the candidate passes on it, why, and the two figures."""

    passed: bool
    reason: str
    samples: int
    candidate: float | None
    current: float | None


def evaluate(
    candidate: ServedModel,
    current: ServedModel,
    holdout: tuple[Rows, Sequence[str]],
    canary: tuple[Rows, Sequence[str]],
    params: GateParams,
) -> GateResult:
    """Judge ``candidate`` against ``current`` on held-out new samples and the canary set."""
    held = held_out_check(candidate, current, holdout, params)
    kept = canary_check(candidate, current, canary, params)
    return GateResult(
        promote=held.passed and kept.passed,
        reason=f"{held.reason}; {kept.reason}",
        holdout_samples=held.samples,
        holdout_candidate=held.candidate,
        holdout_current=held.current,
        canary_samples=kept.samples,
        canary_candidate=kept.candidate,
        canary_current=kept.current,
        metric=(_MSE if candidate.spec.regress else _ACCURACY).key,
    )


def held_out_check(
    candidate: ServedModel,
    current: ServedModel,
    holdout: tuple[Rows, Sequence[str]],
    params: GateParams,
) -> Check:
    """New samples: the candidate must not be worse at all (regress: within the R² slack)."""
    if candidate.spec.regress:
        return _mse_check("held-out", candidate, current, holdout, params)
    cand = accuracy(candidate, *holdout)
    cur = _current_accuracy(current, candidate, holdout)
    passed, reason = _ACCURACY.check("held-out", cand, cur, 0.0, "")
    return Check(passed, reason, len(holdout[1]), cand, cur)


def canary_check(
    candidate: ServedModel,
    current: ServedModel,
    canary: tuple[Rows, Sequence[str]],
    params: GateParams,
) -> Check:
    """Earlier samples: at most ``max_regression`` worse, beyond what the canary set's size
    leaves to chance."""
    if candidate.spec.regress:
        return _mse_check("canary", candidate, current, canary, params)
    c_hits = hits(candidate, *canary)
    cand = None if c_hits is None else sum(c_hits) / len(c_hits)
    cur, noise = None, 0.0
    if _comparable(current, candidate):
        cur_hits = hits(current, *canary)
        if cur_hits is not None and c_hits is not None:
            cur, noise = sum(cur_hits) / len(cur_hits), canary_noise(c_hits, cur_hits)
    elif c_hits is not None:
        cur = 0.0  # it cannot read the candidate's rows: it starts from nothing
    bound = _bound(params) + (
        f" plus its {len(canary[1])} samples' noise {noise:.3f}" if noise else ""
    )
    passed, reason = _ACCURACY.check("canary", cand, cur, params.max_regression + noise, bound)
    return Check(passed, reason, len(canary[1]), cand, cur)


def _mse_check(
    what: str,
    candidate: ServedModel,
    current: ServedModel,
    data: tuple[Rows, Sequence[str]],
    params: GateParams,
) -> Check:
    cand = mse(candidate, *data)
    cur = mse(current, *data) if _comparable(current, candidate) else None
    bound = _bound(params) + " (in R²) allows"
    passed, reason = _MSE.check(what, cand, cur, _slack(data[1], params), bound)
    return Check(passed, reason, len(data[1]), cand, cur)


def _bound(params: GateParams) -> str:
    return f", more than max_regression {params.max_regression}"


@dataclass(frozen=True)
class _Metric:
    key: str  # as GateResult.metric names it
    name: str  # as the reasons say it
    higher_is_better: bool
    digits: str  # format of its figures in the reasons
    noise: float  # a change this small is float rounding, not a change

    def check(
        self, what: str, candidate: float | None, current: float | None, slack: float, bound: str
    ) -> tuple[bool, str]:
        """Whether ``candidate`` is at most ``slack`` worse than ``current``, and why."""
        if candidate is None:
            return True, "no held-out new samples" if what == "held-out" else "no canary samples"
        if current is None:
            return True, f"no current {'' if what == 'held-out' else 'canary '}{self.name}"
        worse = current - candidate if self.higher_is_better else candidate - current
        if worse > slack + self.noise:
            moved = "fell" if self.higher_is_better else "rose"
            return False, (
                f"{what} {self.name} {moved} from {current:{self.digits}} to "
                f"{candidate:{self.digits}}{bound}"
            )
        return (
            True,
            f"{what} {self.name} {candidate:{self.digits}} (current {current:{self.digits}})",
        )


_ACCURACY = _Metric("accuracy", "accuracy", True, ".3f", 1e-9)
_MSE = _Metric("mse", "MSE", False, ".6g", 1e-12)


def _comparable(current: ServedModel, candidate: ServedModel) -> bool:
    # A changed spec (another backbone, say) cannot read the candidate's rows: it starts
    # from nothing, like the base model.
    return current.spec == candidate.spec and current.dim in (None, candidate.dim)


def _current_accuracy(
    current: ServedModel, candidate: ServedModel, data: tuple[Rows, Sequence[str]]
) -> float | None:
    if not _comparable(current, candidate):
        return None if len(data[1]) == 0 else 0.0
    return accuracy(current, *data)


def mse(model: ServedModel, rows: Rows, targets: Sequence[str]) -> float | None:
    """Mean squared error of a regress model on ``rows`` (targets as stored text)."""
    if len(targets) == 0:
        return None
    if not model.learned:
        return None  # it answers nothing: there is no error to compare
    estimates = model.estimate_encoded(rows)
    truth = [target_value(t) for t in targets]
    return math.fsum((e.value - y) ** 2 for e, y in zip(estimates, truth, strict=True)) / len(truth)


def _slack(targets: Sequence[str], params: GateParams) -> float:
    """How far MSE may rise on a set: ``max_regression`` of R², in the targets' own unit."""
    values = [target_value(t) for t in targets]
    if not values:
        return 0.0  # nothing to judge on: check() says so without needing a slack
    mean = math.fsum(values) / len(values)
    variance = math.fsum((v - mean) ** 2 for v in values) / len(values)
    return params.max_regression * variance
