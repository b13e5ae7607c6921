"""What a reload applies live, and what it leaves for a restart (no daemon needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailord.daemon.config import Config, load_config
from tailord.daemon.errors import ConfigError
from tailord.daemon.reload import changed_keys, reload, reload_and_log


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "tailord.toml"
    path.write_text(text)
    return load_config(path, data_dir=tmp_path / "data", socket=tmp_path / "s.sock")


def test_policy_applies_and_the_rest_waits_for_a_restart(tmp_path: Path) -> None:
    running = _load(tmp_path, "[policy]\nquiet_seconds = 10\n")
    outcome = reload(
        running,
        lambda: _load(tmp_path, "[policy]\nquiet_seconds = 2\n[model]\nhead = 'linear'\n"),
    )
    assert outcome.applied == ("policy.quiet_seconds",)
    assert outcome.need_restart == ("model.head",)
    assert outcome.config.policy.quiet_seconds == 2
    assert outcome.config.model == running.model, "the running model is kept until a restart"


def test_an_unchanged_file_and_paths_compare_equal(tmp_path: Path) -> None:
    running = _load(tmp_path, "")
    assert changed_keys(running, _load(tmp_path, "")) == []
    moved = load_config(data_dir=tmp_path / "elsewhere", socket=tmp_path / "s.sock")
    assert "data_dir" in changed_keys(running, moved)


def test_a_broken_file_keeps_the_running_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = _load(tmp_path, "")

    def broken() -> Config:
        raise ConfigError("config file x is not valid TOML")

    assert reload_and_log(running, broken) is running
    assert "reload refused" in caplog.text
