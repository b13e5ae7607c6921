"""``tailord``: the daemon's command line. ``tailord serve`` runs in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tailord.daemon.errors import TailordError
from tailord.daemon.logs import configure_logging
from tailord.daemon.release import VersionAction
from tailord.daemon.text import escape
from tailord.daemon.units import add_parser as add_units_parser
from tailord.daemon.units import install_units_main

logger = logging.getLogger("tailord")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailord", description="Personalize a model on this machine, in the background."
    )
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon in the foreground (logs to stderr)")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--data-dir", type=Path, help="where the database and versions live")
    serve.add_argument("--inbox", type=Path, help="the folder samples are dropped into")
    serve.add_argument("--socket", type=Path, help="the Unix socket of the API")
    serve.add_argument("--quiet-seconds", type=float, help="[policy] quiet_seconds")
    serve.add_argument("--head", choices=["knn", "linear", "mlp", "auto"], help="[model] head")
    serve.add_argument(
        "--allow-user", action="append", metavar="USER", help="[api] allowed_users (repeatable)"
    )
    serve.add_argument(
        "--allow-group", action="append", metavar="GROUP", help="[api] allowed_groups (repeatable)"
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_units_parser(sub)
    return parser


def tailord_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "install-units":
        try:
            return install_units_main(args)
        except (TailordError, OSError) as exc:
            print(f"tailord install-units: {escape(str(exc))}", file=sys.stderr)
            return 2
    # The journal's format under systemd (priorities, no timestamps), else the terminal's.
    configure_logging(args.log_level)
    # APScheduler logs every job run at INFO; our own wake-ups are not news.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        # The configuration's types import torch: only `serve` pays for it, not --help.
        from tailord.daemon.config import Config, load_config

        def load() -> Config:
            return load_config(
                args.config,
                data_dir=args.data_dir,
                inbox=args.inbox,
                socket=args.socket,
                quiet_seconds=args.quiet_seconds,
                head=args.head,
                allowed_users=args.allow_user,
                allowed_groups=args.allow_group,
            )

        from tailord.daemon.service import Daemon  # heavy imports (torch) only to serve

        # SIGHUP calls load() again: the file re-read, the same flags on top.
        return Daemon(load(), load).run()
    except TailordError as exc:
        # Every tailord error (config, storage, trainer) says what to do: one line in the
        # journal, not a traceback, and exit code 2 so systemd does not restart in a loop.
        logger.error("%s", escape(" ".join(str(exc).split())))
        return 2
