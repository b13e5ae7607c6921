"""Mini-batch training of a head's layer (and a custom backbone's updatable part).

Classify heads learn label indices with cross-entropy; regress heads (one output) learn
numeric targets with the mean squared error. Given a folder, training checkpoints at each
epoch end and where it is stopped (between two mini-batches: the batch index and the epoch's
shuffling state as of its start), and a run with the same inputs resumes from there, ending
with the same weights as a run never stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from tailord.trainer import checkpoint as ckpt
from tailord.trainer.errors import ModelError, UpdateCancelled
from tailord.trainer.heads import LinearHead, MlpHead
from tailord.trainer.model import Model
from tailord.trainer.spec import UpdateParams

logger = logging.getLogger(__name__)

Rows = npt.NDArray[np.float32]
Emit = Callable[["ProgressEvent"], None]
BLOCK_ROWS = 8192  # training rows gathered at once (see _batches)


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # "began" | "batch" | "epoch"
    epoch: int  # 1-based; for "began", the epochs already done (resumed from a checkpoint)
    # 1-based within the epoch; for "epoch", the number of batches it had; for "began", the
    # batches of the next epoch already done (resumed from a checkpoint taken at a stop)
    batch: int
    loss: float | None  # batch loss, or the epoch's mean loss per sample; None for k-NN
    samples_per_second: float | None  # since "began"
    # "epoch": share of training samples right during the epoch; None for regress heads
    accuracy: float | None = None


def resolve_device(name: str) -> torch.device:
    """ "auto" is a GPU when torch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError('[update] device is "cuda" but torch sees no GPU; set device = "auto"')
    return torch.device(name)


class Trainer:
    """Mini-batch training of a head's layer (and a custom backbone's updatable part).

    ``labels`` are the classify model's labels after this update; a regress model has none
    and its layer has one output.
    """

    def __init__(
        self,
        model: Model,
        head: LinearHead | MlpHead,
        joint: bool,
        labels: tuple[str, ...],
        in_dim: int,
        params: UpdateParams,
        emit: Emit,
        stop: Callable[[], bool],
    ) -> None:
        self.model, self.head, self.joint = model, head, joint
        self.labels, self.in_dim, self.params = labels, in_dim, params
        self.emit, self.stop = emit, stop
        self.feature_dim = in_dim
        self.regress = model.spec.regress

    def fit(
        self, x: Rows, targets: torch.Tensor, folder: Path | None
    ) -> tuple[LinearHead | MlpHead, dict[str, torch.Tensor]]:
        """Train on rows ``x``: ``targets`` are int64 label indices, or float32 numbers."""
        params = self.params
        outputs = 1 if self.regress else len(self.labels)
        device = resolve_device(params.device)
        # A caller inside no_grad or inference_mode must still get a trained layer.
        with torch.inference_mode(False), torch.enable_grad():
            backbone = self.model.trainable_backbone_copy() if self.joint else None
            if backbone is not None:
                with torch.no_grad():
                    self.feature_dim = int(backbone(torch.from_numpy(x[:1])).shape[1])
            # fork_rng: the seeded init must not disturb anyone else's global generator.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(params.seed)
                layer = self.head.grown(self.feature_dim, outputs)
            if self.regress and self.head.layer is None:
                _start_at_mean(layer, targets)
            net: nn.Module = layer if backbone is None else nn.Sequential(backbone, layer)
            net.to(device)
            trainable = [p for p in net.parameters() if p.requires_grad]
            optimizer = _optimizer(trainable, params)
            generator = torch.Generator().manual_seed(params.seed)
            inputs = torch.from_numpy(x).to(device)
            targets = targets.to(device)
            fingerprint = _fingerprint(net, x, targets, params, self.labels)
            at, curve = _Position(), list[dict[str, float | None]]()
            resumed = ckpt.load(folder, fingerprint) if folder is not None else None
            if resumed is not None:
                _restore(net, optimizer, generator, resumed)
                curve = list(resumed.meta["curve"])
                at = _Position(resumed.epoch, resumed.batch, resumed.loss_sum, resumed.right)
                logger.info(
                    "resuming the update after epoch %d, batch %d of the next",
                    at.epochs,
                    at.batches,
                )
            self._loop(net, optimizer, generator, inputs, targets, at, curve, folder, fingerprint)
            net.to("cpu")
        state: dict[str, torch.Tensor] = {}
        if backbone is not None:
            state = {
                n: p.detach().clone() for n, p in backbone.named_parameters() if p.requires_grad
            }
            backbone.requires_grad_(False)
        if isinstance(self.head, MlpHead):
            assert isinstance(layer, nn.Sequential)
            return MlpHead(layer, self.head.trained, self.head.hidden), state
        assert isinstance(layer, nn.Linear)
        return LinearHead(layer, self.head.trained), state

    def _loop(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        at: _Position,
        curve: list[dict[str, float | None]],
        folder: Path | None,
        fingerprint: str,
    ) -> None:
        params, emit, n = self.params, self.emit, len(inputs)
        first = at.epochs + 1
        emit(ProgressEvent("began", at.epochs, at.batches, None, None))
        for point in curve:  # epochs done before a preemption, so the curve is whole
            emit(
                ProgressEvent(
                    "epoch", int(point["epoch"] or 0), 0, point["loss"], None, point["accuracy"]
                )
            )
        started, seen = time.perf_counter(), 0
        for epoch in range(first, params.epochs + 1):
            # A stop mid-epoch saves this state, so the resume draws the same order again.
            rng_at_start = generator.get_state()
            order = torch.randperm(n, generator=generator) if params.shuffle else torch.arange(n)
            order = order.to(inputs.device)
            # Counted on the device, read once an epoch: a per-batch int() is a sync (and on
            # a GPU a stall) for a figure that is only reported per epoch.
            skip = at.batches if epoch == first else 0
            total, batch = (at.loss_sum, 0) if skip else (0.0, 0)
            right = torch.full((), at.right if skip else 0, dtype=torch.int64, device=inputs.device)
            for x, y in _batches(inputs, targets, order, params.batch_size):
                batch += 1
                if batch <= skip:
                    continue  # done before the stop the checkpoint was taken at
                if self.stop():
                    if folder is not None and batch > 1:
                        done = _Position(epoch - 1, batch - 1, total, int(right))
                        _save(folder, fingerprint, done, net, optimizer, rng_at_start, curve)
                        logger.info(
                            "stopped at epoch %d, batch %d: checkpoint written", epoch, batch
                        )
                    raise UpdateCancelled(
                        f"the update was cancelled at epoch {epoch}, batch {batch}; "
                        "the current version is unchanged"
                    )
                out = net(x)
                if self.regress:
                    loss = nn.functional.mse_loss(out[:, 0], y)
                else:
                    loss = nn.functional.cross_entropy(out, y)
                    right += (out.detach().argmax(dim=1) == y).sum()
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                value, size = float(loss.item()), y.shape[0]
                total += value * size
                seen += size
                emit(ProgressEvent("batch", epoch, batch, value, rate(seen, started)))
            accuracy = None if self.regress else int(right) / n
            curve.append({"epoch": epoch, "loss": total / n, "accuracy": accuracy})
            if folder is not None:
                state = generator.get_state()
                _save(folder, fingerprint, _Position(epoch), net, optimizer, state, curve)
            emit(ProgressEvent("epoch", epoch, batch, total / n, rate(seen, started), accuracy))
            logger.debug("epoch %d/%d: mean loss %.6f", epoch, params.epochs, total / n)


def _batches(
    inputs: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of ``size`` rows in ``order``.

    Rows are gathered a block at a time and each batch is a view into its block: one copy
    per block instead of two small ones per batch, the same rows in the same order (so the
    same weights), and memory bounded by the block, not by the training set.
    """
    block = size * max(1, BLOCK_ROWS // size)
    for start in range(0, order.shape[0], block):
        pick = order[start : start + block]
        xs, ys = inputs[pick], targets[pick]
        for offset in range(0, pick.shape[0], size):
            yield xs[offset : offset + size], ys[offset : offset + size]


def _optimizer(trainable: list[nn.Parameter], params: UpdateParams) -> torch.optim.Optimizer:
    if params.optimizer == "sgd":
        return torch.optim.SGD(
            trainable,
            lr=params.learning_rate,
            momentum=params.momentum,
            weight_decay=params.weight_decay,
        )
    return torch.optim.Adam(
        trainable,
        lr=params.learning_rate,
        betas=(params.beta1, params.beta2),
        eps=params.eps,
        weight_decay=params.weight_decay,
    )


def _fingerprint(
    net: nn.Module,
    x: Rows,
    targets: torch.Tensor,
    params: UpdateParams,
    labels: tuple[str, ...],
) -> str:
    # Everything that decides the result: a checkpoint of any other run must not be resumed.
    h = hashlib.sha256()
    h.update(json.dumps([params.to_dict(), list(labels)], sort_keys=True).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(targets.cpu().numpy().tobytes())
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class _Position:
    """Where training stands: epochs done, then batches done of the next epoch and that
    partial epoch's running loss sum and right answers (so its curve point is whole)."""

    epochs: int = 0
    batches: int = 0
    loss_sum: float = 0.0
    right: int = 0


def _save(
    folder: Path,
    fingerprint: str,
    at: _Position,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: torch.Tensor,
    curve: list[dict[str, float | None]],
) -> None:
    """``rng``: the shuffling generator's state as of the start of epoch ``at.epochs + 1``."""
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    opt, groups = ckpt.optimizer_tensors(optimizer)
    tensors.update(opt)
    tensors["rng"] = rng
    meta = ckpt.Meta(
        curve=curve, param_groups=groups, batch=at.batches, loss_sum=at.loss_sum, right=at.right
    )
    ckpt.save(folder, fingerprint, at.epochs, tensors, meta)


def _restore(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    saved: ckpt.Checkpoint,
) -> None:
    device = next(net.parameters()).device
    state = {k[4:]: v.to(device) for k, v in saved.tensors.items() if k.startswith("net.")}
    net.load_state_dict(state)
    opt = {
        k: v.to(device) if not k.endswith(".step") else v
        for k, v in saved.tensors.items()
        if k.startswith("opt.")
    }
    ckpt.restore_optimizer(optimizer, opt, saved.meta["param_groups"])
    generator.set_state(saved.tensors["rng"])


def rate(samples: int, started: float) -> float | None:
    elapsed = time.perf_counter() - started
    return samples / elapsed if elapsed > 0 else None


def _start_at_mean(layer: nn.Module, targets: torch.Tensor) -> None:
    """A fresh regress layer starts at the targets' mean (its bias), not at 0.

    Targets far from 0 (a temperature around 20, a price around 300) would otherwise spend
    the first epochs only moving the bias; seeded, so no randomness is added.
    """
    out = layer[-1] if isinstance(layer, nn.Sequential) else layer
    assert isinstance(out, nn.Linear)
    with torch.no_grad():
        out.bias.fill_(float(targets.double().mean()) if len(targets) else 0.0)
