"""The installed package's release, for ``tailord --version`` and ``tailorctl --version``.

Not a model version: those are numbers the daemon publishes. Looked up only when asked, so
that ``--help`` does not pay for ``importlib.metadata``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tailord")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed; run `pip install .`)"


class VersionAction(argparse.Action):
    """``--version``: print ``PROG RELEASE`` and exit, like argparse's own, but lazily."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **_: object):
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="print the release and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"{parser.prog} {package_version()}\n")
        parser.exit()
