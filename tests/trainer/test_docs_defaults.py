"""docs/configuration.md shows the defaults of [model], [update] and [gate]: keep them true."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tailord.trainer.gate import GateParams
from tailord.trainer.spec import ModelSpec, UpdateParams

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_documented_defaults_are_the_real_defaults() -> None:
    text = DOC.read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    table = tomllib.loads(block)
    assert ModelSpec.from_dict(table["model"]) == ModelSpec()
    assert UpdateParams.from_dict(table["update"]) == UpdateParams()
    assert GateParams.from_dict(table["gate"]) == GateParams()
    documented = set(table["model"]) | {"dim"}  # dim is shown commented out: it has no default
    assert documented == set(ModelSpec().to_dict())
    assert set(table["update"]) == set(UpdateParams().to_dict())
    assert set(table["gate"]) == set(GateParams().to_dict())
