"""Daemon room: the composition root. Config, service lifecycle, inbox watcher and ingestor,
scheduler, update worker process, socket API, and the command-line tools.

This is the only room that knows both ``tailord.storage`` and ``tailord.trainer``.
"""

from __future__ import annotations
