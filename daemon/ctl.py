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
    predict = sub.add_parser("predict", help="predict the label of .npy / .json vector files")
    predict.add_argument("files", nargs="+", metavar="FILE")
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
        err.print(f"[red]tailorctl: {exc.message}[/]")
        return 1
