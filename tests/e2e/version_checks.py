"""Checks shared by the crash and version tests: what must hold in a data directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tailord.storage import load_current
from tailord.storage.fsync import temp_link


def check_current(data_dir: Path) -> int:
    """``current`` resolves to a complete version whose files match its manifest."""
    current = load_current(data_dir)
    assert current.manifest["version"] == current.number
    assert current.manifest["files"]["weights.safetensors"] == current.sha256
    return current.number


def check_no_leftovers(data_dir: Path) -> None:
    assert list((data_dir / "staging").iterdir()) == []
    assert not temp_link(data_dir / "current").is_symlink()


def check_database(data_dir: Path) -> dict[str, int]:
    """Integrity, and: a sample is learned iff the version that learned it is recorded.

    Returns ``{state: count}``.
    """
    with sqlite3.connect(data_dir / "tailord.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        recorded = {n for (n,) in conn.execute("SELECT number FROM versions")}
        rows = conn.execute("SELECT state, learned_in FROM samples").fetchall()
        alive = {n for (n,) in conn.execute("SELECT number FROM versions WHERE removed_at IS NULL")}
    for state, learned_in in rows:
        if state == "learned":
            assert learned_in in recorded, (state, learned_in)
        else:
            assert learned_in is None, (state, learned_in)
    folders = {int(p.name) for p in (data_dir / "versions").iterdir()}
    assert folders == alive, (folders, alive)
    out: dict[str, int] = {}
    for state, _ in rows:
        out[state] = out.get(state, 0) + 1
    return out


def learned_in(data_dir: Path) -> dict[str, int | None]:
    """``{source: learned_in}`` of every sample."""
    with sqlite3.connect(data_dir / "tailord.db") as conn:
        return dict(conn.execute("SELECT source, learned_in FROM samples").fetchall())
