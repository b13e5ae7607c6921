"""Storage room: the SQLite database (samples, versions, updates) and the version folders.

This room never imports torch or ``tailord.trainer``: weights are opaque bytes here.
"""

from __future__ import annotations
