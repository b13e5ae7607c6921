"""Checkpoints of a trained head: safetensors for tensors, JSON for the rest.

A checkpoint is taken at each epoch end and where training is stopped (between two
mini-batches). It describes itself: ``checkpoint.json`` names the format, the fingerprint of
the run it belongs to (inputs, targets, spec, parameters, starting weights), the epochs done,
the batches done of the next epoch (with that partial epoch's loss sum and right answers),
and the loss curve so far; ``checkpoint.safetensors`` holds the trainable weights, the
optimizer state and the shuffling generator's state as of the next epoch's start (so a
resume draws that epoch's order again and skips the batches done). Format 1 (epoch ends
only, no batch fields) still loads, as 0 batches done. Nothing is pickled. The safetensors
file carries the same JSON in its metadata and is the one that counts: it is written to a
temporary name, fsynced and renamed, so a worker killed at any moment leaves the previous
checkpoint or the new one, whole. ``checkpoint.json`` follows it, for people and tools.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import safetensors.torch
import torch

logger = logging.getLogger(__name__)

FORMAT = "tailord.checkpoint/2"
EPOCH_END_FORMAT = "tailord.checkpoint/1"  # before checkpoints at a stop: still resumed
TENSORS = "checkpoint.safetensors"
META = "checkpoint.json"


class Meta(TypedDict):
    """What a checkpoint holds besides tensors (JSON, beside format, fingerprint, epoch)."""

    curve: list[dict[str, float | None]]  # one point per epoch done: epoch, loss, accuracy
    param_groups: list[dict[str, object]]  # torch's optimizer param groups, as it gives them
    batch: int  # batches done of epoch ``epoch + 1`` (0 at an epoch end)
    loss_sum: float  # that partial epoch's sum of batch loss times batch size
    right: int  # that partial epoch's right answers so far (classify)


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs completed
    tensors: dict[str, torch.Tensor]
    meta: Meta

    @property
    def batch(self) -> int:
        return self.meta["batch"]

    @property
    def loss_sum(self) -> float:
        return self.meta["loss_sum"]

    @property
    def right(self) -> int:
        return self.meta["right"]


def save(
    folder: Path,
    fingerprint: str,
    epoch: int,
    tensors: dict[str, torch.Tensor],
    meta: Meta,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    document = json.dumps(
        {"format": FORMAT, "fingerprint": fingerprint, "epoch": epoch, **meta}, sort_keys=True
    )
    _atomic(folder / TENSORS, safetensors.torch.save(cpu, metadata={"meta": document}))
    # Not synced: the safetensors file carries the same JSON and is the one resumed from.
    _atomic(folder / META, document.encode(), sync=False)


def load(folder: Path, fingerprint: str) -> Checkpoint | None:
    """The checkpoint in ``folder`` if it belongs to this very run; None otherwise."""
    path = folder / TENSORS
    if not path.exists():
        return None
    try:
        with safetensors.safe_open(path, "pt") as f:
            meta = json.loads((f.metadata() or {})["meta"])
        tensors = safetensors.torch.load(path.read_bytes())
    except Exception:  # the Rust parser raises its own types; all mean "damaged"
        logger.warning("the checkpoint in %s is damaged; starting afresh", folder)
        return None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, EPOCH_END_FORMAT):
        return None
    if meta.get("fingerprint") != fingerprint:
        logger.info("checkpoint in %s belongs to another run; starting afresh", folder)
        return None
    return Checkpoint(
        int(meta["epoch"]),
        tensors,
        Meta(
            curve=meta["curve"],
            param_groups=meta["param_groups"],
            batch=int(meta.get("batch", 0)),
            loss_sum=float(meta.get("loss_sum", 0.0)),
            right=int(meta.get("right", 0)),
        ),
    )


def optimizer_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], list[dict[str, object]]]:
    """The optimizer's state as named tensors plus JSON-able param groups."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{key}"] = value
    return tensors, state["param_groups"]


def restore_optimizer(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    groups: list[dict[str, object]],
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
