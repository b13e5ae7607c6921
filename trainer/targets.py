"""Numeric targets of a ``task = "regress"`` model, and their canonical text.

Storage keeps a sample's target where a classify model keeps its label: as text. The text
is canonical (the shortest form that reads back as the same float, ``-0.0`` as ``0.0``), so
``3.250``, ``3.25`` and ``+3.25e0`` are one target, and the same content under another
number is a relabel, as it is under another label. No torch here: the ingestor uses it.
"""

from __future__ import annotations

import math
import re

import numpy as np

from tailord.trainer.errors import DecodeError, ModelError

# A plain decimal number: no "nan", "inf", "0x10", "1_000" or spaces, which float() accepts.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_F32_MAX = float(np.finfo(np.float32).max)


def target_text(value: float) -> str:
    """The canonical text of a finite target (raises DecodeError otherwise)."""
    if not math.isfinite(value) or abs(value) > _F32_MAX:
        raise DecodeError(
            f"the target {value!r} is not a finite float32 number; "
            f"give a number between -{_F32_MAX:.4g} and {_F32_MAX:.4g}"
        )
    return repr(float(value) + 0.0)  # + 0.0 turns -0.0 into 0.0


def folder_target(name: str) -> str:
    """The target an inbox folder name gives (``INBOX/3.25/x.npy``), as canonical text."""
    if len(name) > 100 or not _NUMBER.fullmatch(name):
        raise DecodeError(
            f"folder {name[:40]!r} is not a number, and this model learns numeric targets "
            '(task = "regress"); file the sample under a folder named by its target, '
            "such as INBOX/3.25/"
        )
    return target_text(float(name))


def json_target(record: dict[str, object]) -> str:
    """The ``"target"`` of a parsed ``.jsonl`` line, as canonical text."""
    if "target" not in record:
        hint = ' (a "label" is for task = "classify")' if "label" in record else ""
        raise DecodeError(
            f'the line has no "target" number{hint}; this model learns numeric targets: '
            'add "target": <number>'
        )
    value = record["target"]
    if type(value) is not int and type(value) is not float:  # bool is an int subclass
        raise DecodeError(
            f'"target" is {_shown(value)}, not a number; write it as a JSON number, '
            'such as "target": 3.25'
        )
    return target_text(float(value))


def target_value(text: str) -> float:
    """The number of a stored target; ModelError when it is not one (a classify label)."""
    try:
        value = float(text) if _NUMBER.fullmatch(text) else math.nan
    except ValueError:  # pragma: no cover - the pattern admits only what float() reads
        value = math.nan
    if not math.isfinite(value):
        raise ModelError(
            f"the target {text[:40]!r} is not a number: a regress model learns numbers only. "
            "A classify model's samples cannot train it; give it its own data_dir and inbox"
        )
    return value


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    return f"a {type(value).__name__}"
