"""*client*: the commands that steer the daemon's learning: an update's own parameters,
``update --cancel``, ``requeue`` and ``add``."""

from __future__ import annotations

import argparse

from tailord.daemon.api import bodies
from tailord.daemon.ctl.client import Client, ClientError
from tailord.daemon.ctl.main import UPDATE_PARAMETERS
from tailord.daemon.ctl.show import line, safe


def update_params(args: argparse.Namespace) -> bodies.UpdateRequest | None:
    """The parameters given as flags (``--epochs 3``…), or None for the configured ones."""
    given = {
        name: getattr(args, name)
        for name, _, _ in UPDATE_PARAMETERS
        if getattr(args, name, None) is not None
    }
    return bodies.UpdateRequest(**given) if given else None


def cancel(client: Client, args: argparse.Namespace) -> int:
    from tailord.daemon.ctl.commands import print_json

    update_id = args.cancel or _active(client)
    info = client.cancel(update_id)
    if args.json:
        print_json(info)
    else:
        line(f"update #{info.id} cancelled; its samples stay queued ({safe(info.error or '')})")
    return 0


def _active(client: Client) -> int:
    last = client.status().last_update
    if last is None or not last.active:
        raise ClientError("no update is pending or running; name one: --cancel ID")
    return last.id


def cmd_requeue(client: Client, args: argparse.Namespace) -> int:
    from tailord.daemon.ctl.commands import print_json

    if not args.ids and args.label is None and args.state is None:
        raise ClientError(
            "name the samples: tailorctl requeue ID... | --label L | --state rejected"
        )
    result = client.requeue(args.ids, label=args.label, state=args.state)
    if args.json:
        print_json(result)
    else:
        line(
            f"{result.requeued} samples queued again"
            + (f" ({result.already_queued} were queued already)" if result.already_queued else "")
        )
    return 0
