"""``tailorctl`` against a real daemon: what people read (marks, escaped text, one-line
errors) and ``predict`` with every vector file kind, alone and together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tailord.daemon.ctl.main import main as tailorctl
from tests.conftest import DaemonProcess, clusters, npy_bytes, wait_for

MARKUP_LABEL = "[/x]"  # rich reads it as a closing tag: unescaped, it raises or vanishes
CLEAR_SCREEN = "\x1b[2J"


def _run(daemon: DaemonProcess, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = tailorctl([*args, "--socket", str(daemon.socket)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "\x1b" not in captured.out
    return captured.out


def _fails(daemon: DaemonProcess, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one line a failing command prints (exit code 1)."""
    code = tailorctl(["--socket", str(daemon.socket), *args])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("tailorctl: "), err
    assert err.count("\n") == 1, err
    return err


def _learn(daemon: DaemonProcess, seed: int) -> int:
    """Drop a few samples of each label; the version that has learned them."""
    before = daemon.version()
    lines = [
        json.dumps({"label": MARKUP_LABEL if label == "cat" else label, "vector": v.tolist()})
        for label, vectors in clusters(np.random.default_rng(seed), 2).items()
        for v in vectors
    ]
    (daemon.inbox / f"s{seed}.jsonl").write_text("\n".join(lines) + "\n")

    def learned() -> bool:
        with daemon.client() as client:
            status = client.status()
        return status.queued == 0 and status.state == "idle" and (status.version or 0) > before

    wait_for(learned, timeout=90)
    return daemon.version()


def test_tailorctl_shows_marks_and_foreign_text_as_they_are(
    daemon: DaemonProcess, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = short_tmp / "t.toml"
    config.write_text("[versions]\nkeep = 1\n")
    daemon.inbox.mkdir(parents=True)
    daemon.start("--config", str(config))
    daemon.drop("dog", f"e{CLEAR_SCREEN}.npy", npy_bytes(np.full(8, -2.0, np.float32)))
    pinned = _learn(daemon, seed=1)
    assert f"version {pinned} pinned" in _run(daemon, capsys, "pin", str(pinned))
    _learn(daemon, seed=2)
    current = _learn(daemon, seed=3)  # keep = 1: only the pinned one, current and its parent

    listed = json.loads(_run(daemon, capsys, "versions", "--json"))
    marks = {v["number"]: (v["current"], v["pinned"], v["removed"]) for v in listed}
    assert marks[0] == (False, False, True)
    assert marks[pinned] == (False, True, False)
    assert marks[current] == (True, False, False)
    rows = {  # number: [mark, number, parent, created, samples, labels, kept]
        int(cells[1]): cells
        for line in _run(daemon, capsys, "versions").splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) > 2 and cells[1].isdigit()
    }
    assert (rows[0][0], rows[0][-1]) == ("", "removed")
    assert (rows[pinned][0], rows[pinned][-1]) == ("", "pinned")
    assert (rows[current][0], rows[current][-1]) == ("*", "")
    assert MARKUP_LABEL in rows[current][-2]
    assert "(removed)" in _run(daemon, capsys, "versions", "0")

    samples = _run(daemon, capsys, "samples", "--limit", "100")
    assert MARKUP_LABEL in samples
    assert "e\\x1b[2J.npy" in samples
    assert MARKUP_LABEL in _run(daemon, capsys, "status")

    sample = daemon.root / f"[bold]m{CLEAR_SCREEN}.npy"
    sample.write_bytes(npy_bytes(clusters(np.random.default_rng(9), 1)["cat"][0]))
    table = _run(daemon, capsys, "predict", str(sample))
    assert MARKUP_LABEL in table
    assert "[bold]m\\x1b[2J.npy" in table

    # Errors: one line, the daemon's words unchanged, exit code 1.
    gone = _fails(daemon, capsys, "rollback", "0")
    assert "[versions] keep" in gone
    missing = _fails(daemon, capsys, "predict", str(daemon.root / "[none]\x07.npy"))
    assert "[none]\\x07.npy" in missing


def test_predict_takes_each_vector_file_kind_alone_and_together(
    daemon: DaemonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.start()
    for label, vectors in clusters(np.random.default_rng(0), 3).items():
        for i, vector in enumerate(vectors):
            daemon.drop(label, f"{i}.npy", npy_bytes(vector))

    def learned() -> bool:
        with daemon.client() as client:
            status = client.status()
        return sum(status.samples.get("learned", {}).values()) == 6 and status.state == "idle"

    wait_for(learned, timeout=90)
    unseen = clusters(np.random.default_rng(4), 2)
    files = {
        "cat.npy": npy_bytes(unseen["cat"][0].astype(">f8")),  # any byte order and width
        "dog.json": json.dumps(unseen["dog"][0].tolist()).encode(),
        "cat.json": json.dumps({"vector": unseen["cat"][1].tolist(), "label": "?"}).encode(),
        "dog.npy": npy_bytes(np.rint(unseen["dog"][1]).astype("<i8")),
        "note.txt": b"a text",
        "cat.png": b"\x89PNG",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = daemon.root / name
        paths[name].write_bytes(data)
    vectors = [str(paths[n]) for n in ("cat.npy", "dog.json", "cat.json", "dog.npy")]

    together = json.loads(_run(daemon, capsys, "predict", *vectors, "--json"))
    assert [p["label"] for p in together["predictions"]] == ["cat", "dog", "cat", "dog"]
    for path, label in zip(vectors, ["cat", "dog", "cat", "dog"], strict=True):
        alone = json.loads(_run(daemon, capsys, "--json", "predict", path))
        assert alone["predictions"][0]["label"] == label
    table = _run(daemon, capsys, "predict", "--top", "2", *vectors)
    for path in vectors:
        assert Path(path).name in table

    # Files of a kind this model cannot take: the daemon's reason, naming the file.
    text = _fails(daemon, capsys, "predict", str(paths["note.txt"]))
    assert "takes vector inputs, not text/plain" in text
    image = _fails(daemon, capsys, "predict", str(paths["cat.png"]))
    assert "takes vector inputs, not image/png" in image
    mixed = _fails(daemon, capsys, "predict", vectors[0], str(paths["note.txt"]))
    assert f"inputs[1] ({paths['note.txt']})" in mixed
    unknown = daemon.root / "x.csv"
    unknown.write_text("1,2,3")
    assert "cannot predict from a .csv file" in _fails(daemon, capsys, "predict", str(unknown))


def test_a_failing_tailorctl_prints_one_line_and_no_traceback(daemon: DaemonProcess) -> None:
    daemon.start()
    code = "import sys; from tailord.daemon.ctl.main import main; sys.exit(main())"
    for args, message in (
        (["versions", "7"], "there is no version 7"),
        (["update"], "nothing is queued"),
        (["--socket", "/nonexistent/[versions]/s.sock", "status"], "[versions]"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", code, "--socket", str(daemon.socket), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1, done
        assert done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr.lower(), done.stderr
        assert "Traceback" not in done.stderr
