"""``tailorctl``: the command-line client. Tables for people, ``--json`` for scripts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tailord.daemon.client import Client, ClientError
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
        f"{ingest['waiting']} waiting" + (f"  [red]{ingest['error']}[/]" if ingest["error"] else "")
    )
    return 0


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    before = client.version()["version"]
    result = client.update()
    if args.wait:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            status = client.status()
            if status["state"] == "idle" and status["version"] != before:
                result = {"version": status["version"]}
                break
            if status["state"] == "idle" and status["queued"] == 0:
                result = {"version": status["version"], "message": "nothing was queued"}
                break
        else:
            err.print("[red]timed out waiting for the update; see `tailorctl status`[/]")
            return 1
    if args.json:
        _print_json(result)
    elif args.wait:
        out.print(f"version {result['version']}")
    else:
        out.print("update requested; follow it with `tailorctl status`")
    return 0


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
    result = client.predict(inputs)
    if args.json:
        _print_json(result)
        return 0
    table = Table("file", "label", "score", title=f"version {result['version']}")
    for name, prediction in zip(args.files, result["predictions"], strict=True):
        table.add_row(name, prediction["label"], f"{prediction['score']:.3f}")
    out.print(table)
    return 0


def cmd_versions(client: Client, args: argparse.Namespace) -> int:
    from tailord.daemon.plot import PlotError, render_curve

    # GET /v1/versions/{n} answers {"number", "current", "manifest"} (issue 6's route).
    info = client.request("GET", f"/v1/versions/{int(args.number)}")
    if args.plot is None:
        _print_json(info)
        return 0
    manifest = {**info.get("manifest", info), "version": info.get("number", args.number)}
    try:
        render_curve(manifest, Path(args.plot))
    except PlotError as exc:
        raise ClientError(str(exc)) from exc
    out.print(f"wrote {args.plot}")
    return 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "version": cmd_version,
    "status": cmd_status,
    "update": cmd_update,
    "predict": cmd_predict,
    "versions": cmd_versions,
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
    predict = sub.add_parser("predict", help="predict the label of .npy / .json vector files")
    predict.add_argument("files", nargs="+", metavar="FILE")
    versions = sub.add_parser("versions", help="one version's manifest, or its curve as a plot")
    versions.add_argument("number", type=int, metavar="N")
    versions.add_argument("--plot", metavar="FILE", help="write the loss curve (.svg or .png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Client(args.socket) as client:
            return COMMANDS[args.command](client, args)
    except ClientError as exc:
        err.print(f"[red]tailorctl: {exc.message}[/]")
        return 1
