"""``POST /v1/predict``: inputs as JSON or one raw sample file, labels (or values) out.

Inputs are validated by the same decoders as the inbox, so a prediction sees exactly what an
update would have learned from the same file.
"""

from __future__ import annotations

import json
import math

import numpy as np

from tailord.daemon.api.bodies import LabelScore, Prediction, Predictions, PredictQuery
from tailord.daemon.api.params import ApiError, read_query
from tailord.daemon.http.wire import Request
from tailord.daemon.versions.serving import Served
from tailord.trainer.errors import DecodeError, ModelError
from tailord.trainer.inputs import SAMPLE_SUFFIXES, decode_record, decode_sample

MAX_INPUTS = 4096
# A raw request body is one sample file; its Content-Type stands for the file's suffix.
RAW_TYPES = {
    "application/x-npy": ".npy",
    "application/octet-stream": ".npy",
    "text/plain": ".txt",
    "image/png": ".png",
    "image/jpeg": ".jpg",
}


def predict(served: Served, request: Request) -> Predictions:
    """``POST /v1/predict`` with ``served``: the caller holds one reference for the whole
    request, so a swap in the meantime does not mix two versions."""
    model = served.model
    top = read_query(request, PredictQuery).top
    if top > 1 and model.spec.regress:
        raise ApiError(
            400, "bad_parameter", "top ranks labels; this model estimates numbers: drop ?top"
        )
    try:
        # The request's own faults (400, 413, 415, 422) come before "nothing learned".
        if model.spec.input_kind == "vector" and _is_json(request):
            vectors = _vectors(request)
            model.check_learned()
            rows = model.rows(vectors)
        else:
            payloads = _payloads(request, model.spec.input_kind)
            model.check_learned()
            rows = model.encode(payloads)
        answers: list[Prediction]
        if model.spec.regress:  # a number each, not a label and a score
            answers = [Prediction(value=e.value) for e in model.estimate_encoded(rows)]
        elif top == 1:
            answers = [Prediction(p.label, p.score) for p in model.predict_encoded(rows)]
        else:  # the best label as usual, and the runners-up beside it
            answers = [
                Prediction(
                    ranked[0].label,
                    ranked[0].score,
                    top=[LabelScore(p.label, p.score) for p in ranked],
                )
                for ranked in model.rank_encoded(rows, top)
            ]
    except ModelError as exc:
        status = 409 if not model.learned else 422
        raise ApiError(status, "cannot_predict", str(exc)) from exc
    return Predictions(served.number, answers)


def _json_inputs(request: Request, example: str) -> list[object]:
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from exc
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(422, "bad_input", f"send {example}: a non-empty list")
    if len(inputs) > MAX_INPUTS:
        raise ApiError(413, "too_many_inputs", f"{len(inputs)} inputs; send at most {MAX_INPUTS}")
    return inputs


def _vectors(request: Request) -> np.ndarray:
    inputs = _json_inputs(request, '{"inputs": [[0.1, 0.2, ...], ...]}')
    rows = []
    for i, row in enumerate(inputs):
        if not isinstance(row, list) or not row or not all(_is_number(v) for v in row):
            raise ApiError(422, "bad_input", f"inputs[{i}] is not a list of numbers")
        rows.append(row)
    if len({len(r) for r in rows}) != 1:
        raise ApiError(422, "bad_input", "all inputs must have the same length")
    return np.asarray(rows, dtype=np.float32)


def _payloads(request: Request, input_kind: str) -> list[bytes]:
    """Inputs in their stored form, validated by the same decoders as the inbox."""
    content_type = _content_type(request)
    try:
        if content_type == "application/json":
            example = '{"inputs": ["a text", ...]} or {"inputs": [{"image": "<base64>"}]}'
            return [
                decode_record({"text": item} if isinstance(item, str) else item, input_kind).payload
                for item in _json_inputs(request, example)
            ]
        suffix = RAW_TYPES.get(content_type)
        if suffix is None or SAMPLE_SUFFIXES[suffix] != input_kind:
            accepted = sorted(t for t, x in RAW_TYPES.items() if SAMPLE_SUFFIXES[x] == input_kind)
            raise ApiError(
                415,
                "unsupported_media_type",
                f"this model takes {input_kind} inputs, not {content_type}; send JSON "
                f'{{"inputs": [...]}} or one file as {" or ".join(accepted)}',
            )
        return [decode_sample(request.body, suffix, input_kind).payload]
    except DecodeError as exc:
        raise ApiError(422, "bad_input", str(exc)) from exc


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


def _is_json(request: Request) -> bool:
    return _content_type(request) == "application/json"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
