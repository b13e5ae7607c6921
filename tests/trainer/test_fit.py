"""The mini-batch loop's own parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tailord.trainer import fit
from tailord.trainer.heads import LinearHead
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update


@pytest.mark.parametrize(("n", "size", "block_rows"), [(20, 3, 8), (20, 3, 2), (7, 8, 8192)])
def test_batches_are_the_rows_in_order_cut_at_the_batch_size(
    monkeypatch: pytest.MonkeyPatch, n: int, size: int, block_rows: int
) -> None:
    monkeypatch.setattr(fit, "BLOCK_ROWS", block_rows)
    inputs = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    targets = torch.arange(n) * 10
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    batches = list(fit._batches(inputs, targets, order, size))
    assert [len(y) for _, y in batches] == [len(order[i : i + size]) for i in range(0, n, size)]
    assert torch.equal(torch.cat([x for x, _ in batches]), inputs[order])
    assert torch.equal(torch.cat([y for _, y in batches]), targets[order])


def test_block_size_does_not_change_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (50, 4)).astype(np.float32)
    y = [f"c{i % 3}" for i in range(50)]
    params = UpdateParams(epochs=3, batch_size=8, seed=1)
    base = Model.base(ModelSpec(head="linear"))
    trained = []
    for block_rows in (8192, 16):
        monkeypatch.setattr(fit, "BLOCK_ROWS", block_rows)
        head = run_update(base, x, y, np.zeros((0, 4), np.float32), [], params).head
        assert isinstance(head, LinearHead)
        trained.append(head.tensors())
    assert trained[0].keys() == trained[1].keys()
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])
