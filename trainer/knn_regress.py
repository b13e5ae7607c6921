"""The k-NN head of a regress model: a memory of rows and their numeric targets.

A prediction is the mean of the ``k`` nearest rows' targets, weighted like a classify k-NN
vote (inverse distance, or uniform). The memory is bounded by one reservoir over every
sample (a target is a number, not a class to keep a share for).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tailord.trainer.errors import ModelError
from tailord.trainer.neighbours import Neighbours
from tailord.trainer.spec import ModelSpec
from tailord.trainer.weights import expect_names


class KnnRegressor(Neighbours):
    """Remembers (a uniform reservoir of) every sample; answers the neighbours' mean."""

    MEMORY = "knn.memory"
    VALUES = "knn.values"
    SEEN = "knn.seen"  # samples ever offered (shape [1]): drives the reservoir

    def __init__(
        self,
        memory: torch.Tensor,
        values: torch.Tensor,
        k: int,
        metric: str,
        *,
        weighting: str = "distance",
        max_memory: int | None = None,
        seen: int | None = None,
    ) -> None:
        super().__init__(memory, k, metric, weighting)
        self.values = self._per_row(values, torch.float32)
        self.max_memory = max_memory
        self.seen = int(memory.shape[0]) if seen is None else seen

    @classmethod
    def empty(cls, spec: ModelSpec, dim: int | None) -> KnnRegressor:
        memory = torch.zeros(0, dim or 0, dtype=torch.float32)
        return cls._for_spec(spec, memory, torch.zeros(0, dtype=torch.float32))

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], spec: ModelSpec) -> KnnRegressor:
        expect_names(tensors, {cls.MEMORY, cls.VALUES, cls.SEEN})
        seen = tensors[cls.SEEN]
        if seen.dtype != torch.int64 or tuple(seen.shape) != (1,) or int(seen[0]) < 0:
            raise ModelError(
                "the k-NN sample count is not one non-negative int64; "
                "restore the version's weights file from a good copy"
            )
        return cls._for_spec(spec, tensors[cls.MEMORY], tensors[cls.VALUES], int(seen[0]))

    @classmethod
    def _for_spec(
        cls, spec: ModelSpec, memory: torch.Tensor, values: torch.Tensor, seen: int | None = None
    ) -> KnnRegressor:
        return cls(
            memory,
            values,
            spec.k,
            spec.metric,
            weighting=spec.weighting,
            max_memory=spec.max_memory,
            seen=seen,
        )

    def appended(self, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> KnnRegressor:
        """A new head with ``x`` (targets ``y``) added, within ``max_memory`` rows.

        Past the bound it is Vitter's algorithm R: the i-th sample ever offered replaces a
        random row with probability max_memory / i, so the memory stays a uniform sample of
        everything seen. Seeded by ``seed`` and the count seen: the same input, the same memory.
        """
        cap = self.max_memory
        rows = list(self.memory.unbind()) if self.sample_count else []
        values = self.values.tolist()
        seen = self.seen
        generator = torch.Generator().manual_seed(seed + seen)
        for row, value in zip(x.unbind(), y.tolist(), strict=True):
            seen += 1
            if cap is None or len(rows) < cap:
                rows.append(row)
                values.append(value)
                continue
            j = int(torch.randint(seen, (1,), generator=generator))
            if j < cap:
                rows[j], values[j] = row, value
        dim = x.shape[1] if x.ndim == 2 else self.dim
        memory = torch.stack(rows) if rows else torch.zeros(0, dim)
        return KnnRegressor(
            memory.contiguous(),
            torch.tensor(values, dtype=torch.float32),
            self.k,
            self.metric,
            weighting=self.weighting,
            max_memory=cap,
            seen=seen,
        )

    def estimate(self, x: torch.Tensor) -> torch.Tensor:
        """The weighted mean target of each row's ``k`` nearest: a tensor [n]."""

        def mean(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return (weight * self.values[index]).sum(dim=1) / weight.sum(dim=1)

        return self._lookup(x, mean, torch.zeros(0, dtype=torch.float32))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            self.MEMORY: self.memory,
            self.VALUES: self.values,
            self.SEEN: torch.tensor([self.seen], dtype=torch.int64),
        }
