"""Checkpoints at epoch ends and at a stop (mid-epoch); a preempted update resumes and ends
with the same weights, bit for bit, as one never stopped."""

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

    whole_events: list[ProgressEvent] = []
    whole = run_update(base, x, y, NO_REPLAY, [], params, whole_events.append)

    # Stopped before epoch 3's third batch: two of its batches are done and checkpointed.
    with pytest.raises(UpdateCancelled, match="epoch 3, batch 3"):
        run_update(base, x, y, NO_REPLAY, [], params, None, stop_after(10), checkpoint_dir=tmp_path)
    meta = json.loads((tmp_path / checkpoint.META).read_text())
    assert (meta["epoch"], meta["batch"]) == (2, 2)
    assert meta["format"] == checkpoint.FORMAT
    assert [p["epoch"] for p in meta["curve"]] == [1, 2]

    events: list[ProgressEvent] = []
    resumed = run_update(base, x, y, NO_REPLAY, [], params, events.append, checkpoint_dir=tmp_path)
    assert (events[0].kind, events[0].epoch, events[0].batch) == ("began", 2, 2)
    assert sum(e.kind == "batch" for e in events) == 3 * 4 - 2  # no batch done twice
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2, 3, 4, 5]
    for name, tensor in tensors(whole).items():
        assert torch.equal(tensor, tensors(resumed)[name]), name
    # The partial epoch's figures carry over: the curve is the uninterrupted run's.
    curve = [(e.epoch, e.loss, e.accuracy) for e in events if e.kind == "epoch"]
    assert curve == [(e.epoch, e.loss, e.accuracy) for e in whole_events if e.kind == "epoch"]


def test_stops_in_two_epochs_resume_bit_equal(clusters: Clusters, tmp_path: Path) -> None:
    """Stopped twice (mid-epoch both times, the second inside the resumed partial epoch)."""
    x, y = clusters(["a", "b", "c"], 10, seed=3)
    params = UpdateParams(epochs=4, batch_size=8, learning_rate=0.05)
    base = Model.base(ModelSpec(head="mlp"))
    whole = run_update(base, x, y, NO_REPLAY, [], params)
    with pytest.raises(UpdateCancelled, match="epoch 2, batch 2"):
        run_update(base, x, y, NO_REPLAY, [], params, None, stop_after(5), checkpoint_dir=tmp_path)
    with pytest.raises(UpdateCancelled, match="epoch 2, batch 4"):
        run_update(base, x, y, NO_REPLAY, [], params, None, stop_after(2), checkpoint_dir=tmp_path)
    assert json.loads((tmp_path / checkpoint.META).read_text())["batch"] == 3
    resumed = run_update(base, x, y, NO_REPLAY, [], params, checkpoint_dir=tmp_path)
    for name, tensor in tensors(whole).items():
        assert torch.equal(tensor, tensors(resumed)[name]), name


def test_an_epoch_end_checkpoint_of_format_1_still_resumes(
    clusters: Clusters, tmp_path: Path
) -> None:
    x, y = clusters(["a", "b"], 10, seed=1)
    params = UpdateParams(epochs=3, batch_size=8)
    base = Model.base(ModelSpec(head="linear"))
    whole = run_update(base, x, y, NO_REPLAY, [], params)
    with pytest.raises(UpdateCancelled, match="epoch 2, batch 1"):
        run_update(base, x, y, NO_REPLAY, [], params, None, stop_after(3), checkpoint_dir=tmp_path)
    # Rewrite it as the older format wrote it: no batch fields.
    import safetensors.torch

    path = tmp_path / checkpoint.TENSORS
    with safetensors.safe_open(path, "pt") as f:
        meta = json.loads((f.metadata() or {})["meta"])
    for key in ("batch", "loss_sum", "right"):
        del meta[key]
    meta["format"] = checkpoint.EPOCH_END_FORMAT
    old = safetensors.torch.load_file(path)
    safetensors.torch.save_file(old, path, metadata={"meta": json.dumps(meta)})
    events: list[ProgressEvent] = []
    resumed = run_update(base, x, y, NO_REPLAY, [], params, events.append, checkpoint_dir=tmp_path)
    assert (events[0].epoch, events[0].batch) == (1, 0)
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
