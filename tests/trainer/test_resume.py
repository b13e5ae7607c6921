"""Checkpoints at epoch ends; a preempted update resumes and ends with the same weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from tailord.trainer import checkpoint
from tailord.trainer.errors import UpdateCancelled
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import ProgressEvent, run_update

Clusters = Callable[..., tuple[npt.NDArray[np.float32], list[str]]]  # see conftest.py
NO_REPLAY = np.zeros((0, 8), dtype=np.float32)


def tensors(model: Model) -> dict[str, torch.Tensor]:
    return model.head.tensors()


def stop_after(asks: int) -> Callable[[], bool]:
    count = [0]

    def stop() -> bool:
        count[0] += 1
        return count[0] > asks

    return stop


@pytest.mark.parametrize(
    ("head", "optimizer"), [("linear", "adam"), ("mlp", "adam"), ("mlp", "sgd")]
)
def test_resumed_update_equals_an_uninterrupted_one(
    clusters: Clusters, tmp_path: Path, head: str, optimizer: str
) -> None:
    x, y = clusters(["a", "b", "c"], 10, seed=1)  # 30 samples, batches of 8: 4 per epoch
    params = UpdateParams(epochs=5, batch_size=8, learning_rate=0.05, optimizer=optimizer)
    base = Model.base(ModelSpec(head=head))
    whole = run_update(base, x, y, NO_REPLAY, [], params)

    with pytest.raises(UpdateCancelled, match="epoch 3, batch 2"):
        run_update(base, x, y, NO_REPLAY, [], params, None, stop_after(9), checkpoint_dir=tmp_path)
    meta = json.loads((tmp_path / checkpoint.META).read_text())
    assert meta["epoch"] == 2
    assert meta["format"] == checkpoint.FORMAT
    assert [p["epoch"] for p in meta["curve"]] == [1, 2]

    events: list[ProgressEvent] = []
    resumed = run_update(base, x, y, NO_REPLAY, [], params, events.append, checkpoint_dir=tmp_path)
    assert events[0].kind == "began"
    assert events[0].epoch == 2  # resumed after epoch 2
    assert sum(e.kind == "batch" for e in events) == 3 * 4  # only epochs 3..5 ran
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2, 3, 4, 5]
    for name, tensor in tensors(whole).items():
        assert torch.equal(tensor, tensors(resumed)[name]), name


def test_a_checkpoint_of_other_inputs_is_not_resumed(clusters: Clusters, tmp_path: Path) -> None:
    x, y = clusters(["a", "b"], 10, seed=1)
    params = UpdateParams(epochs=3, batch_size=8)
    base = Model.base(ModelSpec(head="linear"))
    with pytest.raises(UpdateCancelled):
        run_update(base, x, y, NO_REPLAY, [], params, None, stop_after(4), checkpoint_dir=tmp_path)
    other_x, other_y = clusters(["a", "b"], 10, seed=2)
    events: list[ProgressEvent] = []
    run_update(
        base, other_x, other_y, NO_REPLAY, [], params, events.append, checkpoint_dir=tmp_path
    )
    assert events[0].epoch == 0  # started afresh
    assert sum(e.kind == "batch" for e in events) == 3 * 3


def test_checkpoint_files_hold_no_pickle(clusters: Clusters, tmp_path: Path) -> None:
    x, y = clusters(["a", "b"], 10, seed=1)
    run_update(
        Model.base(ModelSpec(head="mlp")),
        x,
        y,
        NO_REPLAY,
        [],
        UpdateParams(epochs=1),
        checkpoint_dir=tmp_path,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [checkpoint.TENSORS, checkpoint.META]
    )
    import safetensors.torch

    names = set(safetensors.torch.load_file(tmp_path / checkpoint.TENSORS))
    assert "rng" in names
    assert any(n.startswith("opt.") for n in names)
    assert any(n.startswith("net.") for n in names)
