"""Configuration: defaults, TOML, flags on top, and errors that name the problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tailord.daemon.config import default_data_dir, default_socket, load_config
from tailord.daemon.errors import ConfigError


def test_defaults_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY", "TAILORD_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    config = load_config()
    assert config.data_dir == tmp_path / "data" / "tailord"
    assert config.inbox == tmp_path / "data" / "tailord" / "inbox"
    assert config.socket == tmp_path / "run" / "tailord" / "tailord.sock"
    assert config.model.head == "knn"
    assert config.policy.quiet_seconds == 10.0


def test_systemd_directories_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAILORD_SOCKET", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tailord")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/tailord")
    assert default_data_dir() == Path("/var/lib/tailord")
    assert default_socket() == Path("/run/tailord/tailord.sock")
    monkeypatch.setenv("TAILORD_SOCKET", "/tmp/x.sock")
    assert default_socket() == Path("/tmp/x.sock")


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "tailord.toml"
    path.write_text(
        f'data_dir = "{tmp_path}/d"\n'
        '[model]\nhead = "linear"\n'
        "[update]\nepochs = 3\n"
        "[policy]\nquiet_seconds = 5\nmin_queued = 2\n"
        '[api]\nallowed_users = ["1234"]\n'
    )
    config = load_config(path, quiet_seconds=0.5, allowed_users=["99"])
    assert config.data_dir == tmp_path / "d"
    assert config.model.head == "linear"
    assert config.update.epochs == 3
    assert config.policy.quiet_seconds == 0.5
    assert config.policy.min_queued == 2
    assert config.api.allowed_users == ("1234", "99")
    assert load_config(path, head="knn").model.head == "knn"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[polcy]\nx = 1\n", "unknown section or key 'polcy'"),
        ("[policy]\nquiet = 1\n", "unknown key 'quiet' in [policy]"),
        ('[policy]\nquiet_seconds = "soon"\n', "quiet_seconds must be a float"),
        ("[policy]\nmin_queued = 1.5\n", "must be a whole number"),
        ('[model]\nhead = "forest"\n', "head"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_config_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tailord.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_regress_task_and_its_incompatible_head(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[model]\ntask = "regress"\nhead = "mlp"\nmax_memory = 50\n')
    config = load_config(path)
    assert config.model.regress
    assert config.model.max_memory == 50
    with pytest.raises(ConfigError, match='with task = "regress" set head = "knn", "linear"'):
        load_config(path, head="auto")  # --head auto on a regress model
    path.write_text('[model]\ntask = "regression"\n')
    with pytest.raises(ConfigError, match="task 'regression' is unknown; set it to one of"):
        load_config(path)
