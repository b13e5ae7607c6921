from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from tailord.daemon.ctl.plot import PlotError, render_curve

MANIFEST = {
    "version": 3,
    "metrics": {
        "curve": [
            {"epoch": 1, "loss": 1.2, "accuracy": 0.4},
            {"epoch": 2, "loss": 0.7, "accuracy": 0.7},
            {"epoch": 3, "loss": 0.3, "accuracy": 0.95},
        ]
    },
}


def test_svg_curve_is_valid_xml_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "curve.svg"
    render_curve(MANIFEST, path)
    root = ET.fromstring(path.read_text())
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    loss_points = [tuple(map(float, p.split(","))) for p in lines[0].get("points", "").split()]
    assert len(loss_points) == 3
    assert loss_points[0][1] < loss_points[-1][1]  # falling loss is drawn downwards (y grows)


def test_png_curve_is_an_image(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    render_curve(MANIFEST, path)
    with Image.open(path) as image:
        assert image.size == (640, 360)
        colors = {c for _, c in image.getcolors(1 << 16) or []}
    assert (0x1F, 0x77, 0xB4) in colors


def test_no_curve_or_bad_suffix_is_explained(tmp_path: Path) -> None:
    with pytest.raises(PlotError, match="has no loss curve"):
        render_curve({"version": 0, "metrics": {}}, tmp_path / "x.svg")
    with pytest.raises(PlotError, match=r"name the file \.svg or \.png"):
        render_curve(MANIFEST, tmp_path / "x.pdf")
