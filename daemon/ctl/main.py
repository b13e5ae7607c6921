"""``tailorctl``: the command-line client. Tables for people, ``--json`` for scripts.

It starts in the time the interpreter does: this module imports argparse and the standard
library only; the client (http.client, msgspec) is imported once the arguments are parsed,
rich only by the commands that draw with it, and never torch, numpy or the daemon's service
(tests/daemon/test_ctl.py checks).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tailord.daemon.ctl.show import error_line
from tailord.daemon.release import VersionAction

SHELLS = ("bash", "zsh", "tcsh")
# shtab's completion of file names (shtab.FILE), spelled out so the parser needs no shtab.
FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
SAMPLE_STATES = ("queued", "learned", "rejected")
LOCAL = ("completion", "man")  # commands that answer without the daemon
# `update`'s flags for this update's own parameters: the fields of bodies.UpdateRequest
# (spelled out: the parser starts without msgspec; tests/daemon/test_ctl.py compares them).
UPDATE_PARAMETERS: tuple[tuple[str, type | tuple[str, ...], str], ...] = (
    ("epochs", int, "this update only: passes over the samples"),
    ("learning_rate", float, "this update only: the optimizer's step size"),
    ("batch_size", int, "this update only: samples a mini-batch"),
    ("seed", int, "this update only: the seed of shuffling and initialization"),
    ("replay", int, "this update only: earlier samples mixed in, at most"),
    ("optimizer", ("adam", "sgd"), "this update only: the optimizer"),
    ("momentum", float, "this update only: sgd's momentum"),
    ("beta1", float, "this update only: adam's beta1"),
    ("beta2", float, "this update only: adam's beta2"),
    ("eps", float, "this update only: adam's eps"),
    ("weight_decay", float, "this update only: L2 weight decay"),
    ("shuffle", bool, "this update only: a new sample order each epoch"),
    ("device", ("auto", "cpu", "cuda"), "this update only: where it trains"),
    ("k", int, "this update's version: neighbours that vote (k-NN heads)"),
)


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``tailorctl: <message>``, and exit code 2."""

    def error(self, message: str) -> NoReturn:
        error_line(f"{message} (see `{self.prog} --help`)")
        sys.exit(2)


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--socket`` and ``--json``, before the command or after it. After it, their default
    is SUPPRESS, so that not repeating them keeps what was given before the command."""
    _files(
        parser.add_argument(
            "--socket",
            default=None if top else argparse.SUPPRESS,
            metavar="PATH",
            help="the daemon's socket (default: $TAILORD_SOCKET, else the user's, "
            "else the system's)",
        )
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print JSON for scripts",
    )


def _files(action: argparse.Action) -> None:
    """Complete this argument with file names (shtab reads ``complete``)."""
    action.complete = FILE  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tailorctl", description="Talk to a running tailord.")
    parser.add_argument("--version", action=VersionAction)
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        found = sub.add_parser(name, help=summary, description=summary)
        _common(found, top=False)
        return found

    command("version", "the current model version")
    command("status", "queue, policy, last update")
    update = command("update", "start an update now")
    update.add_argument("--wait", action="store_true", help="wait until it has finished")
    update.add_argument(
        "--defer", action="store_true", help="start it once the policy's conditions hold"
    )
    update.add_argument("--timeout", type=float, default=600, help="seconds to wait at most")
    update.add_argument("--show", type=int, metavar="ID", help="show update ID instead")
    _steering(update)
    update.add_argument(
        "--from",
        dest="from_",
        choices=["current", "base"],
        default="current",
        help="base: retrain from version 0 on every learned sample plus the queue",
    )
    forget = command(
        "forget", "forget samples: out of the database and every version (retrains if needed)"
    )
    forget.add_argument("--id", type=int, action="append", default=[], metavar="ID")
    forget.add_argument("--sha256", action="append", default=[], metavar="HASH")
    forget.add_argument("--label", help="every sample with this label")
    forget.add_argument(
        "--force", action="store_true", help="also remove pinned versions that learned them"
    )
    predict = command(
        "predict", "predict the label (or value) of samples: .npy, .json, .txt, .png, .jpg files"
    )
    _files(
        predict.add_argument(
            "files", nargs="+", metavar="FILE", help="sample files; several go in one request"
        )
    )
    predict.add_argument(
        "--top", type=int, default=1, metavar="K", help="show the K best labels of each file"
    )
    versions = command("versions", "the versions (current, pinned, removed), or one in full")
    versions.add_argument("number", nargs="?", type=int, metavar="N")
    _files(
        versions.add_argument(
            "--plot", metavar="FILE", help="with N: write its loss/accuracy curve (.svg or .png)"
        )
    )
    samples = command("samples", "sample counts and a page of samples")
    samples.add_argument("--state", choices=SAMPLE_STATES)
    samples.add_argument("--label")
    samples.add_argument("--after", type=int, metavar="ID", help="samples after this id")
    samples.add_argument("--limit", type=int, default=50)
    _samples_commands(command)
    command("events", "follow the daemon's events (Ctrl-C to stop)")
    command("metrics", "the Prometheus metrics")
    command("openapi", "the API's OpenAPI document")
    rollback = command("rollback", "make version N (default: the parent) current")
    rollback.add_argument("n", type=int, nargs="?", metavar="N")
    pin = command("pin", "keep version N whatever [versions] keep says")
    pin.add_argument("n", type=int, metavar="N")
    unpin = command("unpin", "let version N be removed when it gets old")
    unpin.add_argument("n", type=int, metavar="N")
    import_base = command("import-base", "publish a .safetensors model as a version")
    _files(import_base.add_argument("file", metavar="FILE.safetensors"))
    completion = command("completion", "print the shell completion script")
    completion.add_argument("shell", choices=SHELLS)
    command("man", "print the manual page (roff): tailorctl man | man -l -")
    return parser


def _steering(update: argparse.ArgumentParser) -> None:
    """``update``'s flags beyond "now": cancel, and this update's own parameters."""
    update.add_argument(
        "--cancel",
        type=int,
        nargs="?",
        const=0,
        metavar="ID",
        help="cancel update ID (default: the pending or running one) instead; "
        "its samples stay queued",
    )
    for name, kind, summary in UPDATE_PARAMETERS:
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            update.add_argument(flag, action=argparse.BooleanOptionalAction, help=summary)
        elif isinstance(kind, tuple):
            update.add_argument(flag, choices=kind, help=summary)
        else:
            update.add_argument(flag, type=kind, metavar="N", help=summary)


def _samples_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """``add`` and ``requeue``: samples in over the socket, and back into the queue."""
    add = command(
        "add",
        "teach samples over the socket (no inbox access needed): .npy, .json, .txt, .png, "
        ".jpg files under --label, or .jsonl batches with their labels inside",
    )
    _files(add.add_argument("files", nargs="+", metavar="FILE"))
    add.add_argument("--label", help="the label of every file but .jsonl ones")
    requeue = command(
        "requeue", "put samples back in the queue (with their label): by id, label or state"
    )
    requeue.add_argument("ids", nargs="*", type=int, metavar="ID")
    requeue.add_argument("--label")
    requeue.add_argument(
        "--state", choices=SAMPLE_STATES, help="e.g. rejected: all the gate refused"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tailorctl events | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # one line for people, never a traceback
        error_line(_message(exc))
        return 1


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "completion":
        import shtab

        sys.stdout.write(shtab.complete(parser, args.shell))
        return 0
    if args.command == "man":
        from tailord.daemon.ctl.manpage import manpage

        sys.stdout.write(manpage(parser))
        return 0
    from tailord.daemon.ctl.client import Client
    from tailord.daemon.ctl.commands import COMMANDS

    with Client(args.socket) as client:
        return COMMANDS[args.command](client, args)


def _message(exc: Exception) -> str:
    """What to tell the user: tailord's errors say what to do; anything else is a bug."""
    from tailord.daemon.errors import TailordError

    if isinstance(exc, TailordError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    return f"unexpected {type(exc).__name__}: {exc}; please report it with the command you ran"
