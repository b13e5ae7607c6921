"""An update's own parameters: one set of names, the config's bounds, stored in old files too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from tailord.daemon.api import bodies
from tailord.daemon.config import load_config
from tailord.daemon.ctl.main import UPDATE_PARAMETERS
from tailord.daemon.updates.overrides import BadParameters, asked, resolve, split
from tailord.storage.db import open_database
from tailord.trainer.spec import ModelSpec, UpdateParams

# ``from`` says which head an update starts from (current or base), not how it runs.
REQUEST_FIELDS = [f.name for f in msgspec.structs.fields(bodies.UpdateRequest) if f.name != "from_"]


def test_the_request_takes_every_update_parameter_and_k() -> None:
    assert [f.name for f in msgspec.structs.fields(UpdateParams)] + ["k"] == REQUEST_FIELDS
    assert [name for name, _, _ in UPDATE_PARAMETERS] == REQUEST_FIELDS, "tailorctl's flags"


def test_the_documented_bounds_are_the_configs() -> None:
    """The request declares ``[update]``'s bounds again, for the OpenAPI document: the same."""
    _, params = msgspec.json.schema_components([UpdateParams, ModelSpec])
    _, request = msgspec.json.schema_components([bodies.UpdateRequest])
    config = {**params["UpdateParams"]["properties"], "k": params["ModelSpec"]["properties"]["k"]}
    asked = request["UpdateRequest"]["properties"]
    for name in REQUEST_FIELDS:
        bounds = {key: value for key, value in config[name].items() if key != "default"}
        got = {key: value for key, value in asked[name].items() if key != "description"}
        assert got == bounds, name


def test_bounds_are_the_configs_and_errors_name_the_key(tmp_path: Path) -> None:
    config = load_config(data_dir=tmp_path, socket=tmp_path / "s.sock")
    full = resolve(config, asked({"epochs": 3, "learning_rate": 1}))
    assert (full.epochs, full.learning_rate, full.batch_size) == (3, 1.0, 32)
    assert full.k == config.model.k, "a k-NN head shows its k"
    spec, params = split(config, resolve(config, asked({"k": 2})))
    assert (spec.k, params.epochs) == (2, config.update.epochs)
    for table, named in (
        ({"batch_size": 0}, "batch_size = 0: must be an integer >= 1"),
        ({"momentum": 1.5}, "momentum = 1.5"),
        ({"eps": float("inf")}, "eps = inf: must be a finite number"),
        ({"k": 0}, "k = 0: must be an integer >= 1"),
        ({"epohcs": 1}, "unknown key 'epohcs'"),
    ):
        with pytest.raises(BadParameters, match=named):
            resolve(config, asked(table))


def test_a_database_from_before_gains_the_params_column(tmp_path: Path) -> None:
    path = tmp_path / "tailord.db"
    open_database(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE updates DROP COLUMN params")  # as an earlier release made it
    db = open_database(path)
    try:
        with sqlite3.connect(path) as conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(updates)")]
        assert "params" in columns
    finally:
        db.close()
