"""Storage room: the SQLite database (samples, versions, updates) and the version folders.

This room never imports torch or ``tailord.trainer``: weights are opaque bytes here.
``load_current`` (see ``current.py``) lets other programs read the current version.
"""

from __future__ import annotations

from tailord.storage.current import CurrentVersion, load_current

__all__ = ["CurrentVersion", "load_current"]
