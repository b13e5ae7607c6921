"""``tailorctl``: the command-line client. Tables for people, ``--json`` for scripts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailord.daemon.ctl.client import Client, ClientError
from tailord.trainer.errors import DecodeError
from tailord.trainer.inputs import decode_vector

out = Console()
err = Console(stderr=True)


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def cmd_version(client: Client, args: argparse.Namespace) -> int:
    info = client.version()
    if args.json:
        _print_json(info)
    else:
        out.print(info["version"])
    return 0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    status = client.status()
    if args.json:
        _print_json(status)
        return 0
    out.print(f"[bold]version[/] {status['version']}   [bold]state[/] {status['state']}")
    out.print(f"[bold]policy[/]  {status['policy']}")
    table = Table("label", "queued", "learned")
    samples = status["samples"]
    labels = sorted(set(samples.get("queued", {})) | set(samples.get("learned", {})))
    for label in labels:
        table.add_row(
            label,
            str(samples.get("queued", {}).get(label, 0)),
            str(samples.get("learned", {}).get(label, 0)),
        )
    if labels:
        out.print(table)
    last = status.get("last_update")
    if last:
        outcome = (
            f"version {last['version']}"
            if last["version"] is not None
            else (last["error"] or "in progress")
        )
        out.print(f"[bold]last update[/] #{last['id']} {last['state']}: {outcome}")
    ingest = status["ingest"]
    out.print(
        f"[bold]ingest[/]  {ingest['ingested']} ingested, {ingest['rejected']} rejected, "
        f"{ingest['waiting']} waiting"
    )
    for problem in (ingest.get("error"), ingest.get("backpressure")):
        if problem:
            out.print(f"[red]{problem}[/]")
    return 0


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    if args.show is not None:
        info = client.update_info(args.show)
        _print_json(info) if args.json else _print_update(info)
        return 0
    if not args.wait:
        accepted = client.update()
        if args.json:
            _print_json(accepted)
        else:
            out.print(
                f"update #{accepted['id']} {accepted['state']}; "
                f"follow it with `tailorctl update --show {accepted['id']}` or `tailorctl events`"
            )
        return 0
    if args.json:  # scripts get the end state only; the daemon does the waiting
        info = client.update(wait=True, timeout=args.timeout)
        _print_json(info)
        return 0 if info["state"] == "succeeded" else 1
    with client.subscribe(timeout=60) as stream:  # subscribed before asking: nothing missed
        accepted = client.update()
        final = _follow(client, stream, int(accepted["id"]), time.monotonic() + args.timeout)
    if final is None:
        err.print("[red]timed out waiting for the update; see `tailorctl status`[/]")
        return 1
    _print_update(final)
    return 0 if final["state"] == "succeeded" else 1


def _follow(
    client: Client, stream: Iterable[dict[str, Any]], update_id: int, deadline: float
) -> dict[str, Any] | None:
    """Show a progress bar from the update's events until it finishes; its final state."""
    info = client.update_info(update_id)
    if info["state"] not in ("pending", "running"):
        return info
    columns = (
        TextColumn("[bold]update #{task.fields[update]}[/]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("waiting to start", total=None, update=update_id)
        for event in stream:
            data = event["data"]
            if data.get("update") != update_id:
                pass
            elif event["type"] == "update.began":
                progress.update(task, total=data.get("epochs"), description="starting")
            elif event["type"] == "update.progress":
                loss = data.get("loss")
                progress.update(
                    task,
                    completed=data.get("epoch", 0),
                    description=f"epoch {data.get('epoch')} batch {data.get('batch')}"
                    + ("" if loss is None else f" loss {loss:.4f}"),
                )
            elif event["type"] == "update.judged":
                verdict = "publishing" if data.get("promote") else "rejected by the gate"
                progress.update(task, description=verdict)
            elif event["type"] == "update.finished":
                return client.update_info(update_id)
            if time.monotonic() > deadline:
                return None
    return client.update_info(update_id)  # the stream ended: the daemon is stopping


def _print_update(info: dict[str, Any]) -> None:
    outcome = {
        "succeeded": f"published version {info['version']}",
        "pending": "waiting to start",
        "running": "running",
    }.get(info["state"], info.get("error") or info["state"])
    out.print(
        f"update #{info['id']} [bold]{info['state']}[/]: {outcome} "
        f"({info['samples']} samples, from version {info['base_version']})"
    )


def _plot(info: dict[str, Any], path: Path) -> int:
    from tailord.daemon.ctl.plot import PlotError, render_curve

    try:
        render_curve({**info["manifest"], "version": info["number"]}, path)
    except PlotError as exc:
        raise ClientError(str(exc)) from exc
    out.print(f"wrote {path}")
    return 0


def cmd_versions(client: Client, args: argparse.Namespace) -> int:
    if args.number is not None:
        info = client.version_info(args.number)
        if args.plot is not None:
            return _plot(info, Path(args.plot))
        if args.json:
            _print_json(info)
            return 0
        out.print(f"[bold]version {info['number']}[/]" + (" (current)" if info["current"] else ""))
        out.print_json(data=info["manifest"])
        return 0
    versions = client.versions()
    if args.json:
        _print_json(versions)
        return 0
    table = Table("", "version", "parent", "created", "samples", "labels")
    for v in versions:
        table.add_row(
            "*" if v["current"] else "",
            str(v["number"]),
            "" if v["parent"] is None else str(v["parent"]),
            _when(v["created_at"]),
            str(v["sample_count"]),
            ", ".join(v.get("labels", [])),
        )
    out.print(table)
    return 0


def cmd_samples(client: Client, args: argparse.Namespace) -> int:
    page = client.samples(state=args.state, label=args.label, after=args.after, limit=args.limit)
    if args.json:
        _print_json(page)
        return 0
    table = Table("id", "label", "state", "source", "added", "sha256")
    for sample in page["samples"]:
        table.add_row(
            str(sample["id"]),
            sample["label"],
            sample["state"],
            str(sample.get("source", "")),
            _when(sample["created_at"]),
            sample["sha256"][:12],
        )
    out.print(table)
    totals = {state: sum(labels.values()) for state, labels in page["counts"].items()}
    out.print(", ".join(f"{n} {state}" for state, n in sorted(totals.items())) or "no samples")
    if page["next_after"] is not None:
        out.print(f"more: tailorctl samples --after {page['next_after']}")
    return 0


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    for event in client.events():
        if args.json:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        else:
            details = " ".join(f"{k}={v}" for k, v in event["data"].items())
            out.print(f"{_when(event['time'])} [bold]{event['type']}[/] {details}")
    return 0


def cmd_metrics(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write(client.metrics())
    return 0


def cmd_openapi(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.openapi())
    return 0


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _read_input(path: Path) -> list[float]:
    try:
        vector = decode_vector(path.read_bytes(), path.suffix.lower())
    except DecodeError as exc:
        raise ClientError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ClientError(f"{path}: {exc.strerror}") from exc
    return [float(v) for v in vector]


def cmd_predict(client: Client, args: argparse.Namespace) -> int:
    inputs = [_read_input(Path(name)) for name in args.files]
    result = client.predict(inputs, top=args.top)
    if args.json:
        _print_json(result)
        return 0
    predictions = result["predictions"]
    if predictions and "value" in predictions[0]:  # a regress model: a number each
        table = Table("file", "value", title=f"version {result['version']}")
        for name, prediction in zip(args.files, predictions, strict=True):
            table.add_row(name, f"{prediction['value']:.6g}")
        out.print(table)
        return 0
    table = Table("file", "label", "score", title=f"version {result['version']}")
    for name, prediction in zip(args.files, predictions, strict=True):
        for rank, choice in enumerate(prediction.get("top") or [prediction]):
            table.add_row(name if rank == 0 else "", choice["label"], f"{choice['score']:.3f}")
    out.print(table)
    return 0


def _post(client: Client, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    body = b"" if payload is None else json.dumps(payload).encode()
    result: dict[str, Any] = client.request("POST", path, body)
    return result


def cmd_rollback(client: Client, args: argparse.Namespace) -> int:
    result = _post(client, "/v1/rollback", None if args.n is None else {"version": args.n})
    if args.json:
        _print_json(result)
    elif result["changed"]:
        out.print(f"version {result['version']} is current again (was {result['previous']})")
    else:
        out.print(f"version {result['version']} is already current")
    return 0


def cmd_pin(client: Client, args: argparse.Namespace) -> int:
    path = "/v1/pin" if args.command == "pin" else "/v1/unpin"
    result = _post(client, path, {"version": args.n})
    if args.json:
        _print_json(result)
    else:
        state = "pinned: it is kept" if result["pinned"] else "unpinned"
        out.print(f"version {result['version']} {state}")
    return 0


def cmd_import_base(client: Client, args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise ClientError(f"{args.file}: {exc.strerror}") from exc
    result: dict[str, Any] = client.request(
        "POST", "/v1/import-base", data, "application/octet-stream"
    )
    if args.json:
        _print_json(result)
    else:
        out.print(f"imported as version {result['version']} (parent {result['parent']})")
    return 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "version": cmd_version,
    "status": cmd_status,
    "update": cmd_update,
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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailorctl", description="Talk to a running tailord.")
    parser.add_argument("--socket", help="the daemon's socket (default: $TAILORD_SOCKET)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="the current model version")
    sub.add_parser("status", help="queue, policy, last update")
    update = sub.add_parser("update", help="start an update now")
    update.add_argument("--wait", action="store_true", help="wait until it has finished")
    update.add_argument("--timeout", type=float, default=600, help="seconds to wait at most")
    update.add_argument("--show", type=int, metavar="ID", help="show update ID instead")
    predict = sub.add_parser(
        "predict", help="predict the label (or value) of .npy / .json vector files"
    )
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument(
        "--top", type=int, default=1, metavar="K", help="show the K best labels of each file"
    )
    versions = sub.add_parser("versions", help="the published versions, or one in full")
    versions.add_argument("number", nargs="?", type=int, metavar="N")
    versions.add_argument(
        "--plot", metavar="FILE", help="with N: write its loss/accuracy curve (.svg or .png)"
    )
    samples = sub.add_parser("samples", help="sample counts and a page of samples")
    samples.add_argument("--state", choices=["queued", "learned", "rejected"])
    samples.add_argument("--label")
    samples.add_argument("--after", type=int, metavar="ID", help="samples after this id")
    samples.add_argument("--limit", type=int, default=50)
    sub.add_parser("events", help="follow the daemon's events (Ctrl-C to stop)")
    sub.add_parser("metrics", help="the Prometheus metrics")
    sub.add_parser("openapi", help="the API's OpenAPI document")
    rollback = sub.add_parser("rollback", help="make version N (default: the parent) current")
    rollback.add_argument("n", type=int, nargs="?", metavar="N")
    pin = sub.add_parser("pin", help="keep version N whatever [versions] keep says")
    pin.add_argument("n", type=int, metavar="N")
    unpin = sub.add_parser("unpin", help="let version N be removed when it gets old")
    unpin.add_argument("n", type=int, metavar="N")
    import_base = sub.add_parser("import-base", help="publish a .safetensors model as a version")
    import_base.add_argument("file", metavar="FILE.safetensors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Client(args.socket) as client:
            return COMMANDS[args.command](client, args)
    except ClientError as exc:
        err.print(f"[red]tailorctl: {exc.message}[/]", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130
