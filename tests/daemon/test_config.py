"""Configuration: defaults, TOML, flags on top, and errors that name the problem."""

from __future__ import annotations

import re
import subprocess
import sys
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
        ("[polcy]\nx = 1\n", "unknown section or key 'polcy'; check its spelling"),
        ("[policy]\nquiet = 1\n", "unknown key 'quiet' in [policy]; check its spelling"),
        (
            '[policy]\nquiet_seconds = "soon"\n',
            '[policy] quiet_seconds = "soon": must be a number, not a string; '
            "for example quiet_seconds = 10.0",
        ),
        (
            "[policy]\nquiet_seconds = -5\n",
            "[policy] quiet_seconds = -5: must be a number >= 0.0; "
            "for example quiet_seconds = 10.0",
        ),
        ("[policy]\nmin_queued = 1.5\n", "[policy] min_queued = 1.5: must be an integer, not a"),
        ("[policy]\nmin_queued = 0\n", "min_queued = 0: must be an integer >= 1"),
        ("[policy]\ncheck_seconds = 0\n", "check_seconds = 0: must be a number > 0.0"),
        ("[policy]\nretry_seconds = 90\nmax_retry_seconds = 60\n", "at least retry_seconds"),
        ('[model]\nhead = "forest"\n', '[model] head = "forest": must be one of "knn", "linear"'),
        ("[model\n", "not valid TOML"),
        (
            "data_dir = 5\n",
            'data_dir = 5: must be a path, written as a non-empty string; for example data_dir = "',
        ),
        ('socket = ""\n', 'socket = "": must be a path'),
        ("policy = 3\n", "policy = 3: must be a table, not an integer (write its keys under a"),
        ("[ingest]\nbatch_files = -1\n", "[ingest] batch_files = -1: must be an integer >= 1"),
        ("[ingest]\nsettle_seconds = inf\n", "[ingest] settle_seconds = inf: must be a finite"),
        ("[worker]\nnice = 40\n", "[worker] nice = 40: must be an integer <= 19"),
        ("[worker]\nprewarm = 1\n", "[worker] prewarm = 1: must be true or false"),
        ("[api]\nidle_timeout = 0\n", "[api] idle_timeout = 0: must be a number > 0.0"),
        ('[api]\nallowed_users = "alice"\n', '[api] allowed_users = "alice": must be a list'),
        ("[api]\nallowed_users = [true]\n", "must be a string, not true or false"),
        ("[versions]\nbase = 3\n", "[versions] base = 3: must be a string, not an integer; for"),
        ("[update]\nepochs = 0\n", "[update] epochs = 0: must be an integer >= 1"),
        ("[gate]\nholdout = 2\n", "[gate] holdout = 2: must be a number <= 0.9"),
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
    with pytest.raises(
        ConfigError, match='task = "regression": must be one of "classify", "regress"'
    ):
        load_config(path)


def test_uids_may_be_written_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[api]\nallowed_users = [1001, "alice"]\nallowed_groups = [100]\n')
    config = load_config(path, allowed_users=["bob"])
    assert config.api.allowed_users == ("1001", "alice", "bob")
    assert config.api.allowed_groups == ("100",)


def test_integers_for_seconds_become_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[policy]\nquiet_seconds = 0\n[update]\nlearning_rate = 1\n")
    config = load_config(path)
    assert isinstance(config.policy.quiet_seconds, float)
    assert isinstance(config.update.learning_rate, float)


def test_a_whole_file_of_every_key_loads(tmp_path: Path) -> None:
    """The documented example (every key at its default) is a valid file as it stands."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    block = doc.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "c.toml"
    path.write_text(block.replace("<data_dir>", str(tmp_path)).replace("$XDG_RUNTIME_DIR", "/r"))
    config = load_config(path)
    assert config.inbox == tmp_path / "inbox"
    assert config.ingest.max_jsonl_bytes == 4 * 1024**3


def test_tailord_serve_refuses_a_bad_value_in_one_line(tmp_path: Path) -> None:
    """A real ``tailord serve``: a bad config value ends it with its message, not a traceback."""
    path = tmp_path / "c.toml"
    path.write_text("data_dir = 5\n")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tailord.daemon.cli import tailord_main; sys.exit(tailord_main())",
            "serve",
            "--config",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "data_dir = 5: must be a path, written as a non-empty string" in done.stderr
    assert "Traceback" not in done.stderr
