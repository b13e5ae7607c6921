"""Which kept versions learned a sample: its first version's descendants, and every version
retrained from base after it; on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from tailord.daemon.updates.forget import holders
from tailord.storage.db import open_database
from tailord.storage.models import Version


def test_holders_follow_parents_and_from_base_versions(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    # 0 -> 1 -> 2; rolled back to 1 -> 3; 4 retrained from base (parent 3); 4 -> 5; 6 removed.
    tree = {0: None, 1: 0, 2: 1, 3: 1, 4: 3, 5: 4, 6: 5}
    with db.write() as s:
        for number, parent in tree.items():
            s.add(
                Version(
                    number=number,
                    parent=parent,
                    manifest={"from_base": True} if number == 4 else {},
                    removed_at=1.0 if number == 6 else None,
                )
            )
    with db.read() as s:
        assert holders(s, []) == []
        assert holders(s, [2]) == [2, 4, 5]  # not 3: it was made after rolling 2 back
        assert holders(s, [1]) == [1, 2, 3, 4, 5]
        assert holders(s, [3]) == [3, 4, 5]
        assert holders(s, [5]) == [5]  # 6 learned it too, but its folder is gone
        assert holders(s, [4]) == [4, 5]
    db.close()
