"""A roff manual page written from an argparse parser, so it cannot drift from ``--help``.

``tailorctl man`` prints it; ``tailorctl man | man -l -`` reads it, and packagers install its
output as ``tailorctl.1``.
"""

from __future__ import annotations

import argparse

from tailord.daemon.release import package_version

ENVIRONMENT = {
    "TAILORD_SOCKET": "The daemon's socket, when --socket is not given.",
    "XDG_RUNTIME_DIR": "Without TAILORD_SOCKET, the socket is "
    "$XDG_RUNTIME_DIR/tailord/tailord.sock; when that does not exist, "
    "/run/tailord/tailord.sock (the system service's) is used.",
    "NO_COLOR": "When set, error messages are not coloured.",
}
EXIT_STATUS = {
    "0": "Success.",
    "1": "The daemon answered with an error or could not be reached, or a file could not be "
    "read: the one-line message on standard error says what to do.",
    "2": "The command line is not valid.",
    "130": "Interrupted (Ctrl-C).",
}


def manpage(parser: argparse.ArgumentParser) -> str:
    """The manual page of ``parser`` and its subcommands, in roff (man(7) macros)."""
    prog = parser.prog
    lines = [
        f'.TH {_roff(prog.upper())} 1 "" "{_roff(prog)} {_roff(package_version())}" '
        '"User Commands"',
        ".SH NAME",
        f"{_roff(prog)} \\- {_roff(parser.description or '')}",
        ".SH SYNOPSIS",
        f".B {_roff(prog)}",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
        ".SH OPTIONS",
        *_options(parser),
        ".SH COMMANDS",
    ]
    for name, summary, command in _commands(parser):
        lines += [
            f'.SS "{_roff(name)}"',
            _roff(_usage(command)),
            ".PP",
            _roff(summary),
            *_options(command),
        ]
    lines.append(".SH ENVIRONMENT")
    for name, text in ENVIRONMENT.items():
        lines += [".TP", f"\\fB{_roff(name)}\\fR", _roff(text)]
    lines.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS.items():
        lines += [".TP", f"\\fB{code}\\fR", _roff(text)]
    lines += [".SH SEE ALSO", "\\fBtailord\\fR(1); docs/api.md in the source for the socket API"]
    return "\n".join(lines) + "\n"


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    found: list[tuple[str, str, argparse.ArgumentParser]] = []
    for action in parser._actions:  # argparse keeps its subparsers here, and only here
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help or "" for a in action._choices_actions}
            found += [(name, summaries.get(name, ""), p) for name, p in action.choices.items()]
    return found


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else f" \\fI{_roff(_metavar(action))}\\fR"
            term = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings) + metavar
        else:
            term = f"\\fI{_roff(_metavar(action))}\\fR"
        text = action.help or ""
        if action.choices is not None and action.option_strings:
            text += f" (one of: {', '.join(map(str, action.choices))})"
        lines += [".TP", term, _roff(text)]
    return lines


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage: ").split())


def _roff(text: str) -> str:
    """``text`` with roff's special characters escaped: a backslash, a hyphen (else it may
    be typeset as a dash), and a line-leading dot or quote (else it is read as a macro)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text
