"""The k-NN head of a classify model: a memory of rows and their label indices.

Its metric, standardization and balance are decided by trainer/vote.py, for this head and
for the daemon's numpy updates (knn_memory.py) alike; npheads.py repeats its vote on numpy,
and tests/trainer/test_light.py holds the two equal. What it shares with
:class:`~tailord.trainer.knn_regress.KnnRegressor` (the memory's checks, the distance, the
bounded work per call) is in neighbours.py.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tailord.trainer.errors import ModelError
from tailord.trainer.neighbours import Neighbours
from tailord.trainer.spec import ModelSpec
from tailord.trainer.vote import METRICS, fit_space, label_weights, metric_code, raw_metric
from tailord.trainer.weights import expect_names


class KnnHead(Neighbours):
    """Remembers every sample; the k nearest vote, weighted by inverse distance cubed, on
    features standardized, and balanced over labels, when the memory's leave-one-out accuracy
    says so (trainer/vote.py)."""

    MEMORY = "knn.memory"
    TARGETS = "knn.targets"
    SEEN = "knn.seen"  # samples ever offered per label index: drives the reservoir
    CENTER = "knn.center"  # the vote's standardization (vote.fit_space); optional in files
    SCALE = "knn.scale"
    METRIC = "knn.metric"  # the metric chosen with them (vote.METRICS index); optional in files
    BALANCE = "knn.balance"  # 1: each label's votes over its rows (vote.py); optional in files

    def __init__(
        self,
        memory: torch.Tensor,
        targets: torch.Tensor,
        k: int,
        metric: str,
        *,
        weighting: str = "distance",
        max_per_label: int | None = None,
        seen: torch.Tensor | None = None,
        center: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        choose: str | None = None,
        balance: bool = False,
    ) -> None:
        """``metric`` is the one this memory votes with; ``choose`` the configured one
        (``"auto"`` included) that the next update decides from, ``metric`` if None.
        ``balance``: each label's votes are divided by its rows in the memory."""
        pair = [t for t in (center, scale) if t is not None]
        if len(pair) == 1 or any(
            t.dtype != torch.float32 or tuple(t.shape) != tuple(memory.shape[1:]) for t in pair
        ):
            raise ModelError(
                "the k-NN memory's center and scale are not two float32 [dim] tensors; "
                "restore the version's weights file from a good copy"
            )
        super().__init__(memory, k, metric, weighting, center, scale)
        self.targets = self._per_row(targets, torch.int64)
        self.max_per_label = max_per_label
        self.choose = metric if choose is None else choose
        if seen is None:
            size = int(targets.max()) + 1 if len(targets) else 0
            seen = torch.bincount(targets, minlength=size) if len(targets) else torch.zeros(0)
        self.seen = seen.to(torch.int64)
        self.balance = balance

    @classmethod
    def empty(cls, spec: ModelSpec, dim: int | None) -> KnnHead:
        memory = torch.zeros(0, dim or 0, dtype=torch.float32)
        return cls._for_spec(spec, memory, torch.zeros(0, dtype=torch.int64))

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], spec: ModelSpec) -> KnnHead:
        optional = {cls.SEEN, cls.CENTER, cls.SCALE, cls.METRIC, cls.BALANCE} & set(tensors)
        expect_names(tensors, {cls.MEMORY, cls.TARGETS} | optional)
        return cls._for_spec(
            spec,
            tensors[cls.MEMORY],
            tensors[cls.TARGETS],
            tensors.get(cls.SEEN),
            tensors.get(cls.CENTER),
            tensors.get(cls.SCALE),
            tensors.get(cls.METRIC),
            tensors.get(cls.BALANCE),
        )

    @classmethod
    def _for_spec(
        cls,
        spec: ModelSpec,
        memory: torch.Tensor,
        targets: torch.Tensor,
        seen: torch.Tensor | None = None,
        center: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        metric: torch.Tensor | None = None,
        balance: torch.Tensor | None = None,
    ) -> KnnHead:
        return cls(
            memory,
            targets,
            spec.k,
            stored_metric(metric, spec.metric),
            weighting=spec.weighting,
            max_per_label=spec.max_per_label,
            seen=seen,
            center=center,
            scale=scale,
            choose=spec.metric,
            balance=stored_balance(balance),
        )

    def appended(self, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> KnnHead:
        """A new head with ``x`` added; a label past ``max_per_label`` rows keeps a reservoir.

        Eviction is Vitter's algorithm R per label: the i-th sample ever offered for a label
        that is full replaces a random row of that label with probability cap / i, so the
        memory stays a uniform sample of everything seen. Seeded: the same input, the same
        memory.
        """
        cap = self.max_per_label
        size = max(len(self.seen), int(y.max()) + 1 if len(y) else 0)
        seen = torch.zeros(size, dtype=torch.int64)
        seen[: len(self.seen)] = self.seen
        memory = torch.cat([self.memory, x]) if self.sample_count else x.clone()
        targets = torch.cat([self.targets, y]) if self.sample_count else y.clone()
        if cap is None:
            seen += torch.bincount(y, minlength=size)
        else:
            memory, targets = self._reservoir(x, y, seen, cap, seed)
        memory, targets = memory.contiguous(), targets.contiguous()
        # The same numpy function decides for the daemon's k-NN updates (knn_memory.py).
        space = fit_space(
            memory.numpy(), targets.numpy(), self.k, self.choose, self.weighting, seed
        )
        return KnnHead(
            memory,
            targets,
            self.k,
            space.metric,
            weighting=self.weighting,
            max_per_label=cap,
            seen=seen,
            center=torch.from_numpy(space.center),
            scale=torch.from_numpy(space.scale),
            choose=self.choose,
            balance=space.balance,
        )

    def _reservoir(
        self, x: torch.Tensor, y: torch.Tensor, seen: torch.Tensor, cap: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed + int(seen.sum()))
        rows = list(self.memory.unbind()) if self.sample_count else []
        labels = self.targets.tolist()
        slots: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            slots.setdefault(label, []).append(index)
        for row, label in zip(x.unbind(), y.tolist(), strict=True):
            seen[label] += 1
            mine = slots.setdefault(label, [])
            if len(mine) < cap:
                mine.append(len(rows))
                rows.append(row)
                labels.append(label)
                continue
            j = int(torch.randint(int(seen[label]), (1,), generator=generator))
            if j < cap:
                rows[mine[j]] = row
        dim = x.shape[1] if x.ndim == 2 else self.dim
        memory = torch.stack(rows) if rows else torch.zeros(0, dim)
        return memory, torch.tensor(labels, dtype=torch.int64)

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        # The same weights as the numpy vote's (npheads.knn_scores), from the same function.
        balance = (
            torch.from_numpy(label_weights(self.targets.numpy(), n_labels))
            if self.balance
            else None
        )

        def vote(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            weight = weight * weight * weight  # the sharp kernel: trainer/vote.py
            votes = torch.zeros(weight.shape[0], n_labels, dtype=weight.dtype)
            votes.scatter_add_(1, self.targets[index], weight)
            if balance is not None:
                votes = votes * balance
                return votes / votes.sum(dim=1, keepdim=True)
            return votes / weight.sum(dim=1, keepdim=True)

        return self._lookup(x, vote, torch.zeros(0, n_labels, dtype=torch.float32))

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {self.MEMORY: self.memory, self.TARGETS: self.targets, self.SEEN: self.seen}
        if self.center is not None and self.scale is not None:
            out[self.CENTER], out[self.SCALE] = self.center, self.scale
            out[self.METRIC] = torch.from_numpy(metric_code(self.metric))
            out[self.BALANCE] = torch.tensor([int(self.balance)], dtype=torch.int64)
        return out


def stored_metric(code: torch.Tensor | None, configured: str) -> str:
    """The metric a memory votes with: the one stored with it (``knn.metric``), else (files
    from before it was stored) the configured one, ``"auto"`` meaning cosine there."""
    if code is None:
        return raw_metric(configured)
    if code.dtype != torch.int64 or tuple(code.shape) != (1,) or not 0 <= int(code) < len(METRICS):
        raise ModelError(
            f"the k-NN metric is {code.dtype} {tuple(code.shape)}, not one int64 index of "
            f"{', '.join(METRICS)}; restore the version's weights file from a good copy"
        )
    return METRICS[int(code)]


def stored_balance(code: torch.Tensor | None) -> bool:
    """Whether a memory's votes are balanced: ``knn.balance``; files from before it, no."""
    if code is None:
        return False
    if code.dtype != torch.int64 or tuple(code.shape) != (1,) or int(code) not in (0, 1):
        raise ModelError(
            f"the k-NN balance is {code.dtype} {tuple(code.shape)}, not one int64 0 or 1; "
            "restore the version's weights file from a good copy"
        )
    return bool(int(code))
