"""Shared helpers for the trainer tests: small, seeded Gaussian clusters."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]

CENTERS: dict[str, Sequence[float]] = {
    "a": (4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
    "b": (0.0, 4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0),
    "c": (0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 1.0, 0.0),
}


@pytest.fixture
def clusters() -> Clusters:
    """make(labels, n, seed) -> (x [n*len(labels), 8] float32, labels), grouped by label."""

    def make(
        labels: Sequence[str], n: int, seed: int, spread: float = 0.5
    ) -> tuple[npt.NDArray[np.float32], list[str]]:
        rng = np.random.default_rng(seed)
        parts = [np.asarray(CENTERS[label]) + rng.normal(0, spread, (n, 8)) for label in labels]
        names = [label for label in labels for _ in range(n)]
        return np.concatenate(parts).astype(np.float32), names

    return make
