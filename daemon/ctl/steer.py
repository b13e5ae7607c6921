"""*client*: the commands that steer the daemon's learning: an update's own parameters,
``update --cancel``, ``requeue`` and ``add``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tailord.daemon.api import bodies
from tailord.daemon.ctl.client import Client, ClientError
from tailord.daemon.ctl.main import UPDATE_PARAMETERS
from tailord.daemon.ctl.show import line, plain, safe


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


def cmd_add(client: Client, args: argparse.Namespace) -> int:
    """Each file in its own request: one refused file does not hold back the others'."""
    from tailord.daemon.ctl.commands import print_json
    from tailord.daemon.ctl.inputs import RAW_TYPES, InputError, json_input

    answers = []
    for name in args.files:
        path = Path(name)
        suffix = path.suffix.lower()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from exc
        if suffix != ".jsonl" and args.label is None:
            raise ClientError(
                f"{path}: give its label with --label (only .jsonl files hold theirs)"
            )
        try:
            if suffix == ".jsonl":
                answer = client.add_file(data, "application/x-ndjson", None)
            elif suffix == ".json":
                document = json_input(path, data)
                record: dict[str, object] = (
                    {"vector": document}
                    if isinstance(document, list)
                    else {"text": document}
                    if isinstance(document, str)
                    else dict(document)
                )
                answer = client.add_samples([{**record, "label": args.label}])
            elif suffix in RAW_TYPES:
                answer = client.add_file(data, RAW_TYPES[suffix], args.label)
            else:
                raise InputError(
                    f"{path}: not a sample file; use .npy, .json, .txt, .png, .jpg or .jsonl"
                )
        except ClientError as exc:
            raise ClientError(f"{path}: {exc.message}", status=exc.status, code=exc.code) from exc
        answers.append(answer)
        if not args.json:
            states = ", ".join(f"#{s.id} {s.state}" for s in answer.samples[:5])
            more = f" (+{len(answer.samples) - 5} more)" if len(answer.samples) > 5 else ""
            line(
                f"{plain(path)}: {answer.added} added, {answer.duplicates} known, "
                f"{answer.relabeled} relabeled: {states}{more}"
            )
    if args.json:
        print_json(answers)
    return 0
