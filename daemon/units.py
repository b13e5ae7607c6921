"""``tailord install-units``: the systemd units of ``systemd/``, filled in for this install.

The shipped units (package data of ``tailord.systemd``) name ``/usr/local/bin/tailord``;
pip may have put it elsewhere (a virtualenv, ``~/.local/bin``), so ExecStart is rewritten to
the ``tailord`` being run. An inbox outside the data folder must be writable through the
sandbox: it is passed to ``serve`` and added to ``ReadWritePaths=``; under a home folder,
which ``ProtectHome=yes`` hides, the homes become an empty tmpfs with only the inbox bound in.
Standard library only, so that it runs without importing torch.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tailord.daemon.errors import ConfigError

SHIPPED_PATH = "/usr/local/bin/tailord"
HOMES = (Path("/home"), Path("/root"), Path("/run/user"))


@dataclass(frozen=True)
class UnitFile:
    path: Path  # where it is installed
    text: str


def tailord_path() -> Path:
    """The running ``tailord`` script (a console script: ``argv[0]``), else the one beside
    this interpreter, else the one on ``$PATH``."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "tailord" and argv0.exists():
        return argv0.absolute()
    beside = Path(sys.executable).parent / "tailord"
    if beside.exists():
        return beside
    found = shutil.which("tailord")
    if found is None:
        raise ConfigError(
            "cannot find the tailord script to start; run `tailord install-units` as installed "
            "by pip (its bin folder on PATH)"
        )
    return Path(found).absolute()


def _shipped(name: str) -> str:
    return resources.files("tailord.systemd").joinpath(name).read_text()


def _in_home(path: Path) -> bool:
    return any(path.is_relative_to(home) for home in HOMES)


def fill(text: str, executable: Path, inbox: Path | None, *, system: bool) -> str:
    """``text`` (a shipped unit) with ExecStart's program and the inbox put in."""
    lines: list[str] = []
    for shipped in text.splitlines():
        line = shipped
        if line.startswith("ExecStart="):
            line = line.replace(SHIPPED_PATH, shlex.quote(str(executable)), 1)
            if inbox is not None:
                line += f" --inbox {shlex.quote(str(inbox))}"
        elif inbox is not None and system and line.startswith("#ReadWritePaths="):
            line = f"ReadWritePaths={_unit_path(inbox)}"
            if _in_home(inbox):
                lines.append(f"BindPaths={_unit_path(inbox)}")
        elif inbox is not None and system and _in_home(inbox) and line == "ProtectHome=yes":
            line = "ProtectHome=tmpfs"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _unit_path(path: Path) -> str:
    # systemd's path lists split on spaces and expand % specifiers.
    text = str(path).replace("%", "%%")
    return f'"{text}"' if " " in text else text


def units(
    *, user: bool, inbox: Path | None, prefix: Path | None, executable: Path
) -> list[UnitFile]:
    """The files to write: the service and socket (and, for the system, the sysusers file)."""
    if inbox is not None:
        inbox = inbox.expanduser().absolute()
    root = prefix if prefix is not None else Path("/")
    if user:
        config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        folder = root / config.relative_to("/") / "systemd" / "user"
        return [
            UnitFile(folder / name, fill(_shipped(f"user/{name}"), executable, inbox, system=False))
            for name in ("tailord.service", "tailord.socket")
        ]
    folder = root / "etc" / "systemd" / "system"
    return [
        UnitFile(folder / name, fill(_shipped(name), executable, inbox, system=True))
        for name in ("tailord.service", "tailord.socket")
    ] + [UnitFile(root / "etc" / "sysusers.d" / "tailord.conf", _shipped("tailord.sysusers"))]


def next_steps(*, user: bool) -> list[str]:
    if user:
        return [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now tailord.socket tailord.service",
        ]
    return [
        "systemd-sysusers",
        "systemctl daemon-reload",
        "systemctl enable --now tailord.socket tailord.service",
    ]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "install-units",
        help="write systemd units that run this tailord (then prints the systemctl lines)",
    )
    parser.add_argument("--user", action="store_true", help="units for `systemctl --user`")
    parser.add_argument("--inbox", type=Path, help="the inbox, if not the data folder's inbox/")
    parser.add_argument("--prefix", type=Path, help="write under this root instead of /")
    parser.add_argument("--dry-run", action="store_true", help="print the units, write nothing")


def install_units_main(args: argparse.Namespace) -> int:
    """Writes (or prints) the units; the CLI's one place that prints, like tailorctl."""
    files = units(user=args.user, inbox=args.inbox, prefix=args.prefix, executable=tailord_path())
    for unit in files:
        if args.dry_run:
            print(f"# {unit.path}\n{unit.text}")
            continue
        unit.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = unit.path.with_name(f".{unit.path.name}.tmp")
        tmp.write_text(unit.text)
        tmp.chmod(0o644)  # units are read by systemd and by people: not secret
        tmp.replace(unit.path)
        print(f"wrote {unit.path}")
    print("then run:" if not args.dry_run else "# then run:")
    for line in next_steps(user=args.user):
        print(f"  {line}")
    return 0
