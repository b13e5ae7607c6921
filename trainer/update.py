"""One update: learn the queued samples (plus replay) and return a new Model.

The recipe has fixed phases: check the inputs, extend the labels, then append (k-NN), grow
and train (linear, mlp), or both (auto). Training checkpoints at each epoch end when given a
folder, and a run with the same inputs resumes from there. The input Model is never touched,
so it keeps serving meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from tailord.trainer import checkpoint as ckpt
from tailord.trainer.errors import ModelError, UpdateCancelled
from tailord.trainer.heads import AutoHead, KnnHead, LinearHead, MlpHead
from tailord.trainer.model import HeadType, Model
from tailord.trainer.spec import UpdateParams

logger = logging.getLogger(__name__)

Rows = npt.NDArray[np.float32]
Emit = Callable[["ProgressEvent"], None]


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # "began" | "batch" | "epoch"
    epoch: int  # 1-based; for "began", the epochs already done (resumed from a checkpoint)
    batch: int  # 1-based within the epoch; for "epoch", the number of batches it had
    loss: float | None  # batch loss, or the epoch's mean loss per sample; None for k-NN
    samples_per_second: float | None  # since "began"
    accuracy: float | None = None  # "epoch": share of training samples right during the epoch


def resolve_device(name: str) -> torch.device:
    """ "auto" is a GPU when torch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError('[update] device is "cuda" but torch sees no GPU; set device = "auto"')
    return torch.device(name)


def run_update(
    model: Model,
    new_x: npt.NDArray[np.generic],
    new_labels: Sequence[str],
    replay_x: npt.NDArray[np.generic],
    replay_labels: Sequence[str],
    params: UpdateParams,
    on_progress: Emit | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    checkpoint_dir: Path | None = None,
) -> Model:
    """Learn ``new_x`` (shape (n, dim)) with ``new_labels``; return the candidate Model.

    Rows are head inputs: the backbone's features, or raw vectors for a custom backbone
    with updatable parameters (it is trained with the head). ``replay_x`` holds earlier
    learned samples the caller picked (shape (0, dim) for none); trained heads train on
    them too, at most ``params.replay`` of them. ``should_stop`` is asked before every
    batch; when it answers True, UpdateCancelled is raised (the last checkpoint stays).
    """
    joint = model.trains_backbone
    new = _rows(new_x, new_labels, "new samples")
    if len(new) == 0:
        raise ModelError("the update got no new samples; queue samples before starting one")
    in_dim = new.shape[1] if joint else _fix_dim(model, new.shape[1])
    replay = _rows(replay_x, replay_labels, "replay samples", in_dim)
    emit = on_progress or _ignore
    stop = should_stop or _never
    head = model.head
    backbone_state = model.backbone_state
    if isinstance(head, KnnHead):
        # The memory already holds (a reservoir of) every earlier sample: replay adds nothing.
        labels = _extend(model.labels, new_labels)
        new_head: HeadType = _append(head, new, new_labels, labels, params, emit, stop)
        dim: int | None = in_dim
        replayed = 0
    elif isinstance(head, AutoHead):
        labels = _extend(model.labels, new_labels)
        knn = _append(head.knn, new, new_labels, labels, params, _ignore, stop)
        linear = head.linear
        counts = knn.label_counts(len(labels))
        if min(counts) >= head.min_samples:
            x = knn.memory.numpy()
            names = [labels[i] for i in knn.targets.tolist()]
            trainer = _Trainer(model, linear, False, labels, in_dim, params, emit, stop)
            trained, _ = trainer.fit(x, names, checkpoint_dir)
            assert isinstance(trained, LinearHead)
            linear = LinearHead(trained.layer, len(x))
        else:
            emit(ProgressEvent("began", 0, 0, None, None))
            emit(ProgressEvent("epoch", 1, 1, None, None))
        new_head = AutoHead(knn, linear, head.min_samples)
        dim, replayed = in_dim, 0
    else:
        replay, replay_labels = _cap_replay(replay, replay_labels, params)
        labels = _extend(_extend(model.labels, new_labels), replay_labels)
        x = np.concatenate([new, replay])
        trainer = _Trainer(model, head, joint, labels, in_dim, params, emit, stop)
        fitted, backbone_state = trainer.fit(x, [*new_labels, *replay_labels], checkpoint_dir)
        assert isinstance(fitted, LinearHead | MlpHead)
        fitted.trained = head.trained + len(new)
        new_head, dim, replayed = fitted, trainer.feature_dim, len(replay)
    logger.info(
        "update learned %d new samples (%d replayed); labels %d -> %d",
        len(new),
        replayed,
        len(model.labels),
        len(labels),
    )
    return Model(model.spec, labels, dim, new_head, backbone_state=backbone_state)


def _append(
    head: KnnHead,
    x: Rows,
    names: Sequence[str],
    labels: tuple[str, ...],
    params: UpdateParams,
    emit: Emit,
    stop: Callable[[], bool],
) -> KnnHead:
    emit(ProgressEvent("began", 0, 0, None, None))
    started = time.perf_counter()
    if stop():
        raise UpdateCancelled("the update was cancelled before it began; nothing changed")
    grown = head.appended(torch.from_numpy(x), _targets(names, labels), seed=params.seed)
    emit(ProgressEvent("epoch", 1, 1, None, _rate(len(x), started)))
    return grown


class _Trainer:
    """Mini-batch training of a head's layer (and a custom backbone's updatable part)."""

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

    def fit(
        self, x: Rows, names: Sequence[str], folder: Path | None
    ) -> tuple[LinearHead | MlpHead, dict[str, torch.Tensor]]:
        params = self.params
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
                layer = self.head.grown(self.feature_dim, len(self.labels))
            net: nn.Module = layer if backbone is None else nn.Sequential(backbone, layer)
            net.to(device)
            trainable = [p for p in net.parameters() if p.requires_grad]
            optimizer = _optimizer(trainable, params)
            generator = torch.Generator().manual_seed(params.seed)
            inputs = torch.from_numpy(x).to(device)
            targets = _targets(names, self.labels).to(device)
            fingerprint = _fingerprint(net, x, targets, params, self.labels)
            first, curve = 1, []
            resumed = ckpt.load(folder, fingerprint) if folder is not None else None
            if resumed is not None:
                _restore(net, optimizer, generator, resumed)
                first, curve = resumed.epoch + 1, list(resumed.meta["curve"])
                logger.info("resuming the update after epoch %d", resumed.epoch)
            self._loop(
                net, optimizer, generator, inputs, targets, first, curve, folder, fingerprint
            )
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
        first: int,
        curve: list[dict[str, float]],
        folder: Path | None,
        fingerprint: str,
    ) -> None:
        params, emit, n = self.params, self.emit, len(inputs)
        emit(ProgressEvent("began", first - 1, 0, None, None))
        for point in curve:  # epochs done before a preemption, so the curve is whole
            emit(
                ProgressEvent(
                    "epoch", int(point["epoch"]), 0, point["loss"], None, point["accuracy"]
                )
            )
        started, seen = time.perf_counter(), 0
        for epoch in range(first, params.epochs + 1):
            order = torch.randperm(n, generator=generator) if params.shuffle else torch.arange(n)
            order = order.to(inputs.device)
            total, right, batch = 0.0, 0, 0
            for begin in range(0, n, params.batch_size):
                batch += 1
                if self.stop():
                    raise UpdateCancelled(
                        f"the update was cancelled at epoch {epoch}, batch {batch}; "
                        "the current version is unchanged"
                    )
                pick = order[begin : begin + params.batch_size]
                logits = net(inputs[pick])
                loss = nn.functional.cross_entropy(logits, targets[pick])
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                value = float(loss.item())
                right += int((logits.detach().argmax(dim=1) == targets[pick]).sum())
                total += value * len(pick)
                seen += len(pick)
                emit(ProgressEvent("batch", epoch, batch, value, _rate(seen, started)))
            point = {"epoch": epoch, "loss": total / n, "accuracy": right / n}
            curve.append(point)
            if folder is not None:
                _save(folder, fingerprint, epoch, net, optimizer, generator, curve)
            emit(ProgressEvent("epoch", epoch, batch, total / n, _rate(seen, started), right / n))
            logger.debug("epoch %d/%d: mean loss %.6f", epoch, params.epochs, total / n)


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


def _save(
    folder: Path,
    fingerprint: str,
    epoch: int,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    curve: list[dict[str, float]],
) -> None:
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    opt, groups = ckpt.optimizer_tensors(optimizer)
    tensors.update(opt)
    tensors["rng"] = generator.get_state()
    ckpt.save(folder, fingerprint, epoch, tensors, {"curve": curve, "param_groups": groups})


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


def _rows(
    x: npt.NDArray[np.generic], names: Sequence[str], what: str, dim: int | None = None
) -> Rows:
    # A copy, so that the caller changing its array later cannot change the model.
    rows = np.array(x, dtype=np.float32, order="C")
    if rows.size == 0 and dim is not None:
        rows = rows.reshape(0, dim)
    if rows.ndim != 2:
        raise ModelError(f"the {what} have shape {rows.shape}; pass an array of shape (n, dim)")
    if not all(isinstance(name, str) and name for name in names):
        raise ModelError(f"a label of the {what} is empty or not a string; name every label")
    if len(names) != len(rows):
        raise ModelError(
            f"there are {len(rows)} {what} but {len(names)} labels; pass one label per row"
        )
    if dim is not None and rows.shape[1] != dim:
        raise ModelError(
            f"the {what} have {rows.shape[1]} values each, the model expects {dim}; "
            "pick samples learned by this model"
        )
    if not np.isfinite(rows).all():
        raise ModelError(f"the {what} hold NaN or inf; decode them with decode_vector first")
    return rows


def _fix_dim(model: Model, got: int) -> int:
    if model.dim is None:
        return got  # the first samples fix the input size
    if got != model.dim:
        raise ModelError(
            f"the new samples have {got} values each, but the model expects {model.dim}; "
            f"drop vectors of {model.dim} values, or start a new model for size {got}"
        )
    return model.dim


def _extend(labels: tuple[str, ...], names: Sequence[str]) -> tuple[str, ...]:
    # Appending only: an old index keeps meaning the same label in every later version.
    known = set(labels)
    added = [name for name in dict.fromkeys(names) if name not in known]
    return labels + tuple(added)


def _cap_replay(
    replay: Rows, names: Sequence[str], params: UpdateParams
) -> tuple[Rows, Sequence[str]]:
    if len(replay) <= params.replay:
        return replay, names
    generator = torch.Generator().manual_seed(params.seed)
    keep = torch.randperm(len(replay), generator=generator)[: params.replay].sort().values
    chosen = keep.tolist()
    return replay[chosen], [names[i] for i in chosen]


def _targets(names: Sequence[str], labels: tuple[str, ...]) -> torch.Tensor:
    index = {label: i for i, label in enumerate(labels)}
    return torch.tensor([index[name] for name in names], dtype=torch.int64)


def _rate(samples: int, started: float) -> float | None:
    elapsed = time.perf_counter() - started
    return samples / elapsed if elapsed > 0 else None


def _ignore(event: ProgressEvent) -> None:
    return None


def _never() -> bool:
    return False
