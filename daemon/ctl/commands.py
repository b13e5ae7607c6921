"""``tailorctl``'s commands that talk to the daemon: tables for people, ``--json`` for scripts.

Every string that comes from the daemon or the user goes through :func:`show.safe` on its way
to rich (see :mod:`tailord.daemon.ctl.show`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.ctl import steer
from tailord.daemon.ctl.client import Client, ClientError
from tailord.daemon.ctl.show import line, out, plain, safe

Command = Callable[[Client, argparse.Namespace], int]


def print_json(payload: object) -> None:
    """``payload`` (a body struct or plain data) as indented JSON, keys sorted."""
    import json  # here: the table commands and `version` do without it

    data = msgspec.to_builtins(payload)
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def cmd_version(client: Client, args: argparse.Namespace) -> int:
    info = client.version()
    print_json(info) if args.json else line(str(info.version))
    return 0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    from rich.table import Table

    status = client.status()
    if args.json:
        print_json(status)
        return 0
    console = out()
    console.print(f"[bold]version[/] {status.version}   [bold]state[/] {status.state}")
    console.print(f"[bold]policy[/]  {safe(status.policy)}")
    if status.conditions:
        conditions = Table("condition", "holds", "detail")
        for c in status.conditions:
            conditions.add_row(c.name, "yes" if c.ok else "[red]no[/]", safe(c.detail))
        console.print(conditions)
    states = ("queued", "learned", "rejected")  # rejected: by the gate; `tailorctl requeue`
    by_state = [status.samples.get(state, {}) for state in states]
    labels = sorted(set().union(*by_state))
    table = Table("label", *states)
    for label in labels:
        table.add_row(safe(label), *(str(counts.get(label, 0)) for counts in by_state))
    if labels:
        console.print(table)
    last = status.last_update
    if last is not None:
        outcome = f"version {last.version}" if last.version is not None else last.error
        console.print(
            f"[bold]last update[/] #{last.id} {last.state}: {safe(outcome or 'in progress')}"
        )
    ingest = status.ingest
    console.print(
        f"[bold]ingest[/]  {ingest.ingested} ingested, {ingest.rejected} rejected, "
        f"{ingest.waiting} waiting"
    )
    for problem in (ingest.error, ingest.backpressure):
        if problem:
            console.print(f"[red]{safe(problem)}[/]")
    if status.spec_change is not None:
        console.print(f"[yellow]{safe(status.spec_change)}[/]")
    if status.load_error is not None:
        console.print(
            f"[red]version {status.load_error.version}: {safe(status.load_error.message)}[/]"
        )
    return 0


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    if args.show is not None:
        info = client.update_info(args.show)
        print_json(info) if args.json else _print_update(info)
        return 0
    if args.cancel is not None:
        return steer.cancel(client, args)
    params = steer.update_params(args)
    if args.from_ == "base":
        params = msgspec.structs.replace(params or bodies.UpdateRequest(), from_="base")
    if not args.wait:
        accepted = client.update(params, defer=args.defer)
        if args.json:
            print_json(accepted)
        else:
            line(
                f"update #{accepted.id} {accepted.state}; follow it with "
                f"`tailorctl update --show {accepted.id}` or `tailorctl events`"
            )
        return 0
    if args.json:  # scripts get the end state only; the daemon does the waiting
        info = client.update(params, wait=True, timeout=args.timeout, defer=args.defer)
        print_json(info)
        return 0 if info.state == "succeeded" else 1
    from tailord.daemon.ctl.follow import follow

    with client.subscribe(timeout=60) as stream:  # subscribed before asking: nothing missed
        accepted = client.update(params, defer=args.defer)
        final = follow(client, stream, accepted.id, time.monotonic() + args.timeout)
    if final is None:
        raise ClientError("timed out waiting for the update; see `tailorctl status`")
    _print_update(final)
    return 0 if final.state == "succeeded" else 1


def cmd_forget(client: Client, args: argparse.Namespace) -> int:
    request = bodies.ForgetRequest(
        ids=args.id, sha256=args.sha256, label=args.label, force=args.force
    )
    done = client.forget(request)
    if args.json:
        print_json(done)
        return 0
    removed = ", ".join(map(str, done.versions_removed)) or "none"
    line(
        f"forgot {len(done.samples)} samples ({done.learned} learned); versions removed: "
        f"{removed}; version {done.version} is current ({done.seconds:.1f}s)"
    )
    return 0


def _print_update(info: bodies.UpdateInfo) -> None:
    outcome = {
        "succeeded": f"published version {info.version}",
        "pending": "waiting to start",
        "running": "running",
    }.get(info.state, info.error or info.state)
    out().print(
        f"update #{info.id} [bold]{info.state}[/]: {safe(outcome)} "
        f"({info.samples} samples, from version {info.base_version})"
    )


def cmd_versions(client: Client, args: argparse.Namespace) -> int:
    from rich.table import Table

    if args.number is not None:
        return _version_detail(client.version_info(args.number), args)
    versions = client.versions().versions
    if args.json:
        print_json(versions)
        return 0
    table = Table("", "version", "parent", "created", "samples", "labels", "kept")
    for v in versions:
        kept = "removed" if v.removed else "pinned" if v.pinned else ""
        table.add_row(
            "*" if v.current else "",
            str(v.number),
            "" if v.parent is None else str(v.parent),
            when(v.created_at),
            str(v.sample_count),
            safe(", ".join(v.labels)),
            kept,
            style="dim" if v.removed else None,
        )
    out().print(table)
    line("*: current; pinned: kept whatever [versions] keep says; removed: its files are gone")
    return 0


def _version_detail(info: bodies.VersionDetail, args: argparse.Namespace) -> int:
    if args.plot is not None:
        from tailord.daemon.ctl.plot import render_curve

        path = Path(args.plot)
        render_curve({**info.manifest, "version": info.number}, path)
        line(f"wrote {plain(path)}")
        return 0
    if args.json:
        print_json(info)
        return 0
    flags = {"current": info.current, "pinned": info.pinned, "removed": info.removed}
    marks = [mark for mark, on in flags.items() if on]
    out().print(f"[bold]version {info.number}[/]" + (f" ({', '.join(marks)})" if marks else ""))
    out().print_json(data=info.manifest)  # JSON escapes control characters; no markup read
    return 0


def cmd_samples(client: Client, args: argparse.Namespace) -> int:
    from rich.table import Table

    page = client.samples(state=args.state, label=args.label, after=args.after, limit=args.limit)
    if args.json:
        print_json(page)
        return 0
    table = Table("id", "label", "state", "source", "added", "sha256")
    for sample in page.samples:
        table.add_row(
            str(sample.id),
            safe(sample.label),
            sample.state,
            safe(sample.source),
            when(sample.created_at),
            sample.sha256[:12],
        )
    if page.samples:
        out().print(table)
    totals = {state: sum(labels.values()) for state, labels in page.counts.items()}
    line(", ".join(f"{n} {plain(state)}" for state, n in sorted(totals.items())) or "no samples")
    if page.next_after is not None:
        line(f"more: tailorctl samples --after {page.next_after}")
    return 0


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    for event in client.events():
        if args.json:
            sys.stdout.write(msgspec.json.encode(event).decode() + "\n")
            sys.stdout.flush()
        else:
            details = " ".join(f"{k}={v}" for k, v in event.data.items())
            # One line an event, however long (soft_wrap): `tailorctl events | grep` works.
            text = f"{when(event.time)} [bold]{safe(event.type)}[/] {safe(details)}"
            out().print(text, soft_wrap=True)
            sys.stdout.flush()  # each event as it comes, also into a pipe
    return 0


def cmd_metrics(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write(client.metrics())
    return 0


def cmd_openapi(client: Client, args: argparse.Namespace) -> int:
    print_json(client.openapi())
    return 0


def cmd_predict(client: Client, args: argparse.Namespace) -> int:
    from rich.table import Table

    from tailord.daemon.ctl.inputs import predict_request

    paths = [Path(name) for name in args.files]
    request = predict_request(paths)
    try:
        if request.raw is not None:
            result = client.predict_file(request.raw, request.content_type, top=args.top)
        else:
            result = client.predict(request.inputs, top=args.top)
    except ClientError as exc:
        message = _name_inputs(exc.message, paths)
        raise ClientError(message, status=exc.status, code=exc.code) from exc
    if args.json:
        print_json(result)
        return 0
    predictions = result.predictions
    if predictions and predictions[0].value is not msgspec.UNSET:  # a regress model: a number
        table = Table("file", "value", title=f"version {result.version}")
        for name, prediction in zip(args.files, predictions, strict=True):
            table.add_row(safe(name), f"{prediction.value:.6g}")
        out().print(table)
        return 0
    table = Table("file", "label", "score", title=f"version {result.version}")
    for name, prediction in zip(args.files, predictions, strict=True):
        ranked = (
            [(p.label, p.score) for p in prediction.top]
            if prediction.top is not msgspec.UNSET
            else [(prediction.label, prediction.score)]
        )
        for rank, (label, score) in enumerate(ranked):
            table.add_row(safe(name) if rank == 0 else "", safe(label), f"{score:.3f}")
    out().print(table)
    return 0


def _name_inputs(message: str, paths: list[Path]) -> str:
    """The daemon names a bad input ``inputs[i]``; say which file that was."""
    for i, path in enumerate(paths):
        message = message.replace(f"inputs[{i}]", f"inputs[{i}] ({path})")
    return message


def cmd_rollback(client: Client, args: argparse.Namespace) -> int:
    result = client.rollback(args.n)
    if args.json:
        print_json(result)
    elif result.changed:
        line(f"version {result.version} is current again (was {result.previous})")
    else:
        line(f"version {result.version} is already current")
    return 0


def cmd_pin(client: Client, args: argparse.Namespace) -> int:
    result = client.pin(args.n) if args.command == "pin" else client.unpin(args.n)
    if args.json:
        print_json(result)
    else:
        line(f"version {result.version} " + ("pinned: it is kept" if result.pinned else "unpinned"))
    return 0


def cmd_import_base(client: Client, args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise ClientError(f"{args.file}: {exc.strerror or exc}") from exc
    result = client.import_base(data)
    if args.json:
        print_json(result)
    else:
        line(f"imported as version {result.version} (parent {result.parent})")
    return 0


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


COMMANDS: dict[str, Command] = {
    "version": cmd_version,
    "status": cmd_status,
    "update": cmd_update,
    "forget": cmd_forget,
    "predict": cmd_predict,
    "versions": cmd_versions,
    "samples": cmd_samples,
    "events": cmd_events,
    "metrics": cmd_metrics,
    "openapi": cmd_openapi,
    "rollback": cmd_rollback,
    "pin": cmd_pin,
    "unpin": cmd_pin,
    "import-base": cmd_import_base,
    "requeue": steer.cmd_requeue,
    "add": steer.cmd_add,
}
