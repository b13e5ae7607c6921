"""The trained heads: a linear layer, a small MLP, and "auto" (a k-NN memory, then linear).

The k-NN head is knn_classify.py's (knn_regress.py's for a regress model). A head knows
label *indices* only; the Model maps them to names. Heads are never changed after
construction, so several threads may score with one while an update builds the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import nn

from tailord.trainer.errors import ModelError
from tailord.trainer.knn_classify import KnnHead
from tailord.trainer.weights import expect_names


class Head(Protocol):
    @property
    def sample_count(self) -> int: ...

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        """Per-label scores in [0, 1] for ``x`` [n, dim] float32: a tensor [n, n_labels]."""
        ...

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the head stores in a safetensors file."""
        ...


class LinearHead:
    """A softmax layer over the backbone's features; no layer until a label is learned."""

    WEIGHT = "linear.weight"
    BIAS = "linear.bias"

    def __init__(self, layer: nn.Linear | None, trained: int) -> None:
        if layer is not None:
            layer.requires_grad_(False)
            layer.eval()
        self.layer = layer
        self.trained = trained

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], trained: int) -> LinearHead:
        if not tensors:
            return cls(None, trained)
        expect_names(tensors, {cls.WEIGHT, cls.BIAS})
        weight, bias = tensors[cls.WEIGHT], tensors[cls.BIAS]
        if (
            weight.dtype != torch.float32
            or bias.dtype != torch.float32
            or weight.ndim != 2
            or tuple(bias.shape) != (weight.shape[0],)
        ):
            raise ModelError(
                f"the linear layer is {weight.dtype} {tuple(weight.shape)} + {bias.dtype} "
                f"{tuple(bias.shape)}, not float32 [labels, dim] + [labels]; "
                "restore the version's weights file from a good copy"
            )
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        return cls(layer, trained)

    @property
    def sample_count(self) -> int:
        return self.trained

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        if self.layer is None:
            return torch.zeros(x.shape[0], n_labels, dtype=torch.float32)
        return torch.softmax(self.layer(x), dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.layer is None:
            return {}
        return {
            self.WEIGHT: self.layer.weight.detach().contiguous(),
            self.BIAS: self.layer.bias.detach().contiguous(),
        }

    def grown(self, dim: int, n_labels: int) -> nn.Linear:
        """A trainable copy with ``n_labels`` outputs; the old rows are copied unchanged.

        New rows get torch's default initialization, so seed the global generator first
        when the result must be reproducible.
        """
        layer = nn.Linear(dim, n_labels)
        if self.layer is not None:
            old = self.layer.out_features
            with torch.no_grad():
                layer.weight[:old] = self.layer.weight
                layer.bias[:old] = self.layer.bias
        return layer


class MlpHead:
    """One hidden ReLU layer, then a softmax layer that grows with the labels."""

    HIDDEN_W, HIDDEN_B = "mlp.hidden.weight", "mlp.hidden.bias"
    OUT_W, OUT_B = "mlp.out.weight", "mlp.out.bias"

    def __init__(self, net: nn.Sequential | None, trained: int, hidden: int) -> None:
        if net is not None:
            net.requires_grad_(False)
            net.eval()
        self.layer = net
        self.trained = trained
        self.hidden = hidden

    @staticmethod
    def build(dim: int, hidden: int, n_labels: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_labels))

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, torch.Tensor], trained: int, hidden: int
    ) -> MlpHead:
        if not tensors:
            return cls(None, trained, hidden)
        expect_names(tensors, {cls.HIDDEN_W, cls.HIDDEN_B, cls.OUT_W, cls.OUT_B})
        hw, ow = tensors[cls.HIDDEN_W], tensors[cls.OUT_W]
        if hw.ndim != 2 or ow.ndim != 2 or ow.shape[1] != hw.shape[0]:
            raise ModelError(
                f"the mlp layers are {tuple(hw.shape)} and {tuple(ow.shape)}, which do not "
                "chain; restore the version's weights file from a good copy"
            )
        net = cls.build(hw.shape[1], hw.shape[0], ow.shape[0])
        net.load_state_dict(
            {
                "0.weight": hw,
                "0.bias": tensors[cls.HIDDEN_B],
                "2.weight": ow,
                "2.bias": tensors[cls.OUT_B],
            }
        )
        return cls(net, trained, hw.shape[0])

    @property
    def sample_count(self) -> int:
        return self.trained

    @property
    def out_features(self) -> int | None:
        return None if self.layer is None else _mlp_parts(self.layer)[1].out_features

    @property
    def in_features(self) -> int | None:
        return None if self.layer is None else _mlp_parts(self.layer)[0].in_features

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        if self.layer is None:
            return torch.zeros(x.shape[0], n_labels, dtype=torch.float32)
        return torch.softmax(self.layer(x), dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.layer is None:
            return {}
        state = self.layer.state_dict()
        return {
            self.HIDDEN_W: state["0.weight"].detach().contiguous(),
            self.HIDDEN_B: state["0.bias"].detach().contiguous(),
            self.OUT_W: state["2.weight"].detach().contiguous(),
            self.OUT_B: state["2.bias"].detach().contiguous(),
        }

    def grown(self, dim: int, n_labels: int) -> nn.Sequential:
        """A trainable copy with ``n_labels`` outputs; hidden layer and old rows copied."""
        net = self.build(dim, self.hidden, n_labels)
        if self.layer is not None:
            (old_hidden, old_out), (hidden, out) = _mlp_parts(self.layer), _mlp_parts(net)
            rows = old_out.out_features
            with torch.no_grad():
                hidden.weight.copy_(old_hidden.weight)
                hidden.bias.copy_(old_hidden.bias)
                out.weight[:rows] = old_out.weight
                out.bias[:rows] = old_out.bias
        return net


def _mlp_parts(net: nn.Sequential) -> tuple[nn.Linear, nn.Linear]:
    hidden, out = net[0], net[2]
    assert isinstance(hidden, nn.Linear)
    assert isinstance(out, nn.Linear)
    return hidden, out


class AutoHead:
    """A k-NN memory and, when it measured better on that memory, a linear layer.

    Each update decides which part answers (trainer/auto.py): a version whose k-NN won holds
    no layer. The memory is always kept (it is also the layer's training set, so the layer
    sees a bounded, per-label sample of everything), and it answers whenever the layer does
    not cover every label. ``min_samples`` (``auto_min_samples``) no longer decides.
    """

    def __init__(self, knn: KnnHead, linear: LinearHead, min_samples: int) -> None:
        self.knn = knn
        self.linear = linear
        self.min_samples = min_samples

    @property
    def sample_count(self) -> int:
        return int(self.knn.seen.sum())

    def active(self, n_labels: int) -> str:
        """Which part answers: "linear" once it covers every label, else "knn"."""
        layer = self.linear.layer
        if layer is not None and layer.out_features == n_labels:
            return "linear"
        return "knn"

    def scores(self, x: torch.Tensor, n_labels: int) -> torch.Tensor:
        if self.active(n_labels) == "linear":
            return self.linear.scores(x, n_labels)
        return self.knn.scores(x, n_labels)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**self.knn.tensors(), **self.linear.tensors()}
