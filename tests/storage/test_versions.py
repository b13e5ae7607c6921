"""Version folders on a real file system: publish order, verification, leftovers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tailord.storage.errors import CorruptVersion, StorageError, VersionNotFound
from tailord.storage.fsync import temp_link
from tailord.storage.versions import MANIFEST, WEIGHTS, VersionStore


def _publish(store: VersionStore, number: int, weights: bytes = b"weights") -> Path:
    staging = store.new_staging(f"c{number}")
    (staging / WEIGHTS).write_bytes(weights)
    (staging / "samples.txt").write_text("abc\n")
    return store.publish(staging, number, {"parent": None, "labels": ["cat"]})


def test_publish_seals_the_folder_and_flips_current(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    final = _publish(store, 1, b"\x00\x01weights")
    assert final == tmp_path / "versions" / "1"
    assert list(store.staging_dir.iterdir()) == []
    manifest = json.loads((final / MANIFEST).read_text())
    assert manifest["version"] == 1
    assert manifest["labels"] == ["cat"]
    assert manifest["files"] == {
        WEIGHTS: hashlib.sha256(b"\x00\x01weights").hexdigest(),
        "samples.txt": hashlib.sha256(b"abc\n").hexdigest(),
    }
    assert store.current_number() is None
    store.set_current(1)
    assert os.readlink(tmp_path / "current") == "versions/1"
    assert store.current_number() == 1
    assert store.read(1).weights == b"\x00\x01weights"


def test_a_version_number_is_never_reused(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    _publish(store, 1)
    with pytest.raises(StorageError, match="immutable"):
        _publish(store, 1, b"other")
    assert store.read(1).weights == b"weights"


def test_a_failed_publish_removes_the_candidate(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    staging = store.new_staging("bad")
    (staging / WEIGHTS).write_bytes(b"w")
    os.symlink("/etc/passwd", staging / "link")  # refused: files are opened without following
    with pytest.raises(OSError):  # noqa: PT011 (ELOOP, whatever its subclass)
        store.publish(staging, 1, {})
    assert not staging.exists()
    assert store.numbers() == []


def test_a_flipped_byte_is_detected(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    _publish(store, 1, b"0123456789")
    weights = tmp_path / "versions" / "1" / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptVersion, match="sha256"):
        store.read(1)
    assert not store.is_valid(1)


def test_missing_or_broken_files_are_reported(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    with pytest.raises(VersionNotFound):
        store.read(7)
    _publish(store, 1)
    (tmp_path / "versions" / "1" / "samples.txt").unlink()
    with pytest.raises(CorruptVersion, match="missing"):
        store.read(1)
    _publish(store, 2)
    (tmp_path / "versions" / "2" / MANIFEST).write_text("{not json")
    with pytest.raises(CorruptVersion, match="JSON"):
        store.read(2)


def test_leftovers_are_cleared(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    (store.new_staging("update-3") / WEIGHTS).write_bytes(b"half")
    (store.staging_dir / "stray").write_bytes(b"x")
    os.symlink("versions/9", temp_link(store.current_link))
    assert store.clear_staging() == 3
    assert list(store.staging_dir.iterdir()) == []
    assert not temp_link(store.current_link).is_symlink()


def test_discard_moves_the_folder_out_in_one_step(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    _publish(store, 1)
    _publish(store, 2)
    assert store.discard(1)
    assert not store.discard(1)
    assert store.numbers() == [2]
    assert list(store.staging_dir.iterdir()) == []


def test_current_pointing_elsewhere_is_corrupt(tmp_path: Path) -> None:
    store = VersionStore(tmp_path)
    os.symlink("/tmp", tmp_path / "current")
    with pytest.raises(CorruptVersion, match="not a version folder"):
        store.current_number()
