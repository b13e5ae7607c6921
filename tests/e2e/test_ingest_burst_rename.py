"""A burst of 20,000 files renamed into the inbox from a folder on the same filesystem.

See test_ingest_burst.py; this one is in its own file to keep each file under a minute.
"""

from __future__ import annotations

import pytest

from tests.conftest import DaemonProcess
from tests.e2e.test_ingest_burst import run_burst


@pytest.mark.slow
def test_burst_of_files_renamed_in(daemon: DaemonProcess) -> None:
    run_burst(daemon, "rename")
