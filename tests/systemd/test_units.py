"""The units verify, the system unit's sandbox scores at most 1.5, install-units fills them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TAILORD = Path(sys.executable).parent / "tailord"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="SKIPPED LOUDLY: systemd-analyze is missing; `apt-get install systemd` "
    "(scripts/setup.sh does it as root) so the units are checked",
)


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TAILORD), "install-units", *args], capture_output=True, text=True, check=True
    )


def _analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, env=env, check=False
    )


def _exposure(unit: Path) -> float:
    run = _analyze("security", "--offline=true", "--threshold=15", str(unit))
    assert run.returncode == 0, run.stdout + run.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", run.stdout)
    assert found, run.stdout
    return float(found.group(1))


@needs_analyze
def test_the_shipped_system_unit_scores_at_most_1_5() -> None:
    assert _exposure(ROOT / "systemd" / "tailord.service") <= 1.5


@needs_analyze
def test_installed_system_units_verify_and_keep_the_score(tmp_path: Path) -> None:
    out = _install("--prefix", str(tmp_path), "--inbox", "/home/ann/inbox").stdout
    assert "systemctl enable --now tailord.socket tailord.service" in out
    folder = tmp_path / "etc" / "systemd" / "system"
    service = (folder / "tailord.service").read_text()
    assert f"ExecStart={TAILORD} serve --allow-group tailord --inbox /home/ann/inbox" in service
    assert "ReadWritePaths=/home/ann/inbox\n" in service
    assert "BindPaths=/home/ann/inbox\n" in service
    assert "ProtectHome=tmpfs\n" in service
    assert (tmp_path / "etc" / "sysusers.d" / "tailord.conf").exists()
    for unit in ("tailord.service", "tailord.socket"):
        run = _analyze("verify", str(folder / unit))
        assert run.returncode == 0, run.stdout + run.stderr
    assert _exposure(folder / "tailord.service") <= 1.5


@needs_analyze
def test_installed_user_units_verify(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": "/home/ann/.config"}
    run = subprocess.run(
        [str(TAILORD), "install-units", "--user", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "systemctl --user enable --now tailord.socket tailord.service" in run.stdout
    folder = tmp_path / "home" / "ann" / ".config" / "systemd" / "user"
    assert f"ExecStart={TAILORD} serve\n" in (folder / "tailord.service").read_text()
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    for unit in ("tailord.service", "tailord.socket"):
        check = _analyze("--user", "verify", str(folder / unit), env=env)
        assert check.returncode == 0, check.stdout + check.stderr


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    out = _install("--dry-run", "--prefix", str(tmp_path / "root")).stdout
    assert f"# {tmp_path}/root/etc/systemd/system/tailord.service" in out
    assert "Type=notify" in out
    assert not (tmp_path / "root").exists()


def test_every_non_default_setting_has_a_comment() -> None:
    """Each setting's line comes right after a comment line (``#ReadWritePaths=`` is a
    commented-out example, not a comment); names and the install target need none."""
    for unit in sorted((ROOT / "systemd").rglob("tailord.s*")):
        if unit.suffix not in (".service", ".socket"):
            continue
        before = ""
        for line in unit.read_text().splitlines():
            setting = line and not line.startswith(("#", "["))
            if setting and not line.startswith(("Description=", "Documentation=", "WantedBy=")):
                assert before.startswith("# "), f"{unit.name}: {line!r} has no comment saying why"
            before = line
