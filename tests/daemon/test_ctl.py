"""``tailorctl`` without a daemon: what it imports, its parser, completion, man page, the
files it sends and the text it prints."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import get_type_hints

import numpy as np
import pytest

from tailord.daemon.api.routes import ROUTES
from tailord.daemon.cli import tailord_main
from tailord.daemon.ctl.client import Client
from tailord.daemon.ctl.inputs import InputError, npy_vector, predict_request
from tailord.daemon.ctl.main import build_parser, main
from tailord.daemon.ctl.show import plain, safe

HEAVY = ("torch", "numpy", "sqlalchemy", "tailord.trainer", "tailord.storage")


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    raise AssertionError("tailorctl has no subcommands")


def test_tailorctl_imports_neither_torch_nor_the_daemon() -> None:
    modules = [
        "tailord.daemon.ctl.main",
        "tailord.daemon.ctl.client",
        "tailord.daemon.ctl.commands",
        "tailord.daemon.ctl.follow",
        "tailord.daemon.ctl.inputs",
        "tailord.daemon.ctl.manpage",
        "tailord.daemon.ctl.plot",
    ]
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print([m for m in {[*HEAVY, 'tailord.daemon.service', 'tailord.daemon.config']!r}"
        " if m in sys.modules])"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout
    # --help needs the parser only: not the client, msgspec or rich. `version` needs the
    # client and the commands: not http.client, nor rich (only tables and bars draw with it).
    light = (
        "import sys\nimport tailord.daemon.ctl.main\nparser_only = set(sys.modules)\n"
        "import tailord.daemon.ctl.client, tailord.daemon.ctl.commands\n"
        "print(sorted(m for m in ('msgspec', 'rich', 'tailord.daemon.ctl.client') "
        "if m in parser_only), [m for m in ('http.client', 'rich') if m in sys.modules])"
    )
    found = subprocess.run(
        [sys.executable, "-c", light], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[] []", found.stdout


def test_every_route_has_a_client_method_typed_after_it() -> None:
    for route in ROUTES:
        method = getattr(Client, route.name, None)
        assert callable(method), f"Client has no method {route.name} for {route.path}"
        if route.response is not str:  # /metrics answers text; /v1/events a stream
            assert get_type_hints(method, include_extras=True)["return"] == route.response, (
                route.name
            )


def test_json_and_socket_go_before_or_after_the_command() -> None:
    parser = build_parser()
    after = parser.parse_args(["status", "--json", "--socket", "/s"])
    assert (after.json, after.socket) == (True, "/s")
    before = parser.parse_args(["--json", "--socket", "/s", "status"])
    assert (before.json, before.socket) == (True, "/s")
    neither = parser.parse_args(["status"])
    assert (neither.json, neither.socket) == (False, None)
    assert parser.parse_args(["predict", "a.npy", "--json"]).json is True


def test_version_flags_print_the_release(capsys: pytest.CaptureFixture[str]) -> None:
    for entry, prog in ((main, "tailorctl"), (tailord_main, "tailord")):
        with pytest.raises(SystemExit) as done:
            entry(["--version"])
        assert done.value.code == 0
        assert capsys.readouterr().out == f"{prog} {version('tailord')}\n"


def test_tailord_answers_help_and_version_without_torch() -> None:
    code = "import sys, tailord.daemon.cli; print('torch' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_usage_errors_are_one_line_and_exit_2() -> None:
    code = "import sys; from tailord.daemon.ctl.main import main; sys.exit(main())"
    for args in (["bogus"], ["samples", "--state", "lost"], ["pin"], []):
        done = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
        )
        assert done.returncode == 2, (args, done)
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("tailorctl: "), done.stderr
        assert "--help" in done.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_knows_every_command(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for name in _subcommands(build_parser()):
        assert name in script, (shell, name)
    if shell != "tcsh":  # shtab's tcsh script completes commands and files only
        assert "--top" in script  # an option of a subcommand
    assert {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "n/predict/f/"}[
        shell
    ] in script


def test_man_page_is_written_from_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["man"]) == 0
    page = capsys.readouterr().out
    assert page.startswith(".TH TAILORCTL 1 ")
    parser = build_parser()
    for name in _subcommands(parser):
        assert f'.SS "{name.replace("-", chr(92) + "-")}"' in page, name
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "ENVIRONMENT", "EXIT STATUS"):
        assert f".SH {section}\n" in page
    assert "\\fB\\-\\-top\\fR \\fIK\\fR" in page  # options in roff, hyphens escaped
    assert not [line for line in page.splitlines() if line.startswith(("'", ". "))]


def test_text_from_outside_is_shown_as_it_is() -> None:
    assert plain("a\x1b[2Jb\tc\n\x9b\u202e") == "a\\x1b[2Jb\\tc\\n\\x9b\\u202e"
    assert plain("[/x] ünïcode") == "[/x] ünïcode"
    from rich.console import Console

    texts = ["[/x]", "[versions] keep", "[bold]x[/]", "a\\", "a\\\\", "\\[b]", "\x1b[2J", "é"]
    for text in texts:
        for markup, expected in (
            (safe(text), plain(text)),
            (f"[bold]{safe(text)}[/] {safe(text)}", f"{plain(text)} {plain(text)}"),
        ):
            console = Console(file=io.StringIO(), width=200, color_system=None)
            console.print(markup)
            assert console.file.getvalue() == expected + "\n", text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "dtype", ["<f4", ">f4", "<f8", "<f2", "|i1", "<i8", ">u2", "|u1", "<u8", "<i4"]
)
def test_npy_files_read_without_numpy(dtype: str) -> None:
    array = (np.arange(7) * 3 + 1).astype(dtype)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    assert npy_vector(Path("v.npy"), buffer.getvalue()) == array.astype(float).tolist()


def test_npy_files_that_are_no_vector_are_refused() -> None:
    def saved(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()

    cases = {
        "shape (2, 3)": saved(np.zeros((2, 3), np.float32)),
        "not numbers": saved(np.array(["a", "b"])),
        "not a .npy file": b"plain text",
        "ends before": saved(np.zeros(100, np.float32))[:-8],
        "header cannot be read": b"\x93NUMPY\x01\x00\x08\x00{'descr'",
    }
    for message, data in cases.items():
        with pytest.raises(InputError, match=re.escape(message)):
            npy_vector(Path("bad.npy"), data)


def test_predict_sends_one_file_raw_and_several_as_json(tmp_path: Path) -> None:
    vector = tmp_path / "v.npy"
    np.save(vector, np.array([1.0, 2.0], np.float32))
    text = tmp_path / "t.txt"
    text.write_text("\ufeffhello")
    image = tmp_path / "i.PNG"
    image.write_bytes(b"\x89PNG not really")
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps({"vector": [3, 4], "label": "cat"}))
    texted = tmp_path / "x.json"
    texted.write_text(json.dumps({"text": "hi", "label": "cat"}))

    one = predict_request([vector])
    assert (one.raw, one.content_type) == (vector.read_bytes(), "application/x-npy")
    assert predict_request([image]).content_type == "image/png"
    several = predict_request([vector, text, image, listed, texted])
    assert several.raw is None
    assert several.inputs == [
        [1.0, 2.0],
        "hello",
        {"image": "iVBORyBub3QgcmVhbGx5"},
        [3.0, 4.0],
        "hi",
    ]
    for name, content, message in (
        ("a.csv", "1,2", "cannot predict from a .csv file"),
        ("b.json", '{"vector": ["x"]}', "holds no sample"),
        ("c.json", "{", "not valid JSON"),
    ):
        (tmp_path / name).write_text(content)
        with pytest.raises(InputError, match=message):
            predict_request([vector, tmp_path / name])
    with pytest.raises(InputError, match="No such file"):
        predict_request([tmp_path / "missing.npy"])
