"""The loss/accuracy curve of a version, from its manifest, as SVG or PNG.

SVG is written by hand (no dependency); PNG is drawn with Pillow, already a dependency for
image samples. Loss is drawn against the left scale, accuracy (0..1) against the right.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

from tailord.daemon.errors import TailordError

WIDTH, HEIGHT, MARGIN = 640, 360, 48
LOSS_COLOR, ACCURACY_COLOR = "#1f77b4", "#d62728"


class PlotError(TailordError):
    """The manifest has no curve to draw; only versions made by a trained update have one."""


def render_curve(manifest: Mapping[str, object], path: Path) -> None:
    """Write the epoch loss/accuracy curve of ``manifest`` to ``path`` (.svg or .png)."""
    metrics = manifest.get("metrics")
    curve = metrics.get("curve") if isinstance(metrics, dict) else None
    # A manifest is plain JSON: a point counts when it has a number for its epoch and loss.
    points = [
        p
        for p in (curve if isinstance(curve, list) else [])
        if isinstance(p, dict) and _number(p.get("epoch")) is not None
        if _number(p.get("loss")) is not None
    ]
    if not points:
        raise PlotError(
            f"version {manifest.get('version', '?')} has no loss curve (a k-NN update or the "
            "base model); plot a version made by a linear or mlp update"
        )
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise PlotError(f"cannot write {path.name}: name the file .svg or .png")
    epochs = [_number(p["epoch"]) or 0.0 for p in points]
    losses = [_number(p["loss"]) or 0.0 for p in points]
    accuracy = [a for p in points if (a := _number(p.get("accuracy"))) is not None]
    top = max(losses) * 1.05 or 1.0
    lo_e, hi_e = min(epochs), max(epochs)

    def xy(epoch: float, value: float, scale: float) -> tuple[float, float]:
        span = (hi_e - lo_e) or 1.0
        x = MARGIN + (epoch - lo_e) / span * (WIDTH - 2 * MARGIN)
        y = HEIGHT - MARGIN - value / scale * (HEIGHT - 2 * MARGIN)
        return round(x, 1), round(y, 1)

    loss_line = [xy(e, v, top) for e, v in zip(epochs, losses, strict=True)]
    acc_line = [xy(e, v, 1.0) for e, v in zip(epochs, accuracy, strict=False)]
    title = f"version {manifest.get('version', '?')}: loss (blue), accuracy (red) per epoch"
    labels: list[tuple[float, float, str]] = [
        (MARGIN, MARGIN - 12, title),
        (MARGIN, HEIGHT - MARGIN + 20, f"epoch {lo_e:g}"),
        (WIDTH - MARGIN - 60, HEIGHT - MARGIN + 20, f"epoch {hi_e:g}"),
        (4, MARGIN + 4, f"{top:.3g}"),
        (WIDTH - MARGIN + 6, MARGIN + 4, "1.0"),
        (WIDTH - MARGIN + 6, HEIGHT - MARGIN, "0.0"),
    ]
    if suffix == ".svg":
        path.write_text(_svg(loss_line, acc_line, labels))
    else:
        _png(loss_line, acc_line, labels, path)


def _svg(
    loss: list[tuple[float, float]],
    acc: list[tuple[float, float]],
    labels: list[tuple[float, float, str]],
) -> str:
    def polyline(points: list[tuple[float, float]], color: str) -> str:
        coords = " ".join(f"{x},{y}" for x, y in points)
        return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>'

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{WIDTH - 2 * MARGIN}" '
        f'height="{HEIGHT - 2 * MARGIN}" fill="none" stroke="#888"/>',
        polyline(loss, LOSS_COLOR),
    ]
    if acc:
        parts.append(polyline(acc, ACCURACY_COLOR))
    parts += [f'<text x="{x}" y="{y}">{escape(text)}</text>' for x, y, text in labels]
    parts.append("</svg>\n")
    return "\n".join(parts)


def _png(
    loss: list[tuple[float, float]],
    acc: list[tuple[float, float]],
    labels: list[tuple[float, float, str]],
    path: Path,
) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN), outline="#888888")
    for line, color in ((loss, LOSS_COLOR), (acc, ACCURACY_COLOR)):
        if len(line) > 1:
            draw.line(line, fill=color, width=2)
        elif line:
            x, y = line[0]
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)
    for x, y, text in labels:
        draw.text((x, y - 10), text, fill="black")
    image.save(path, "PNG")


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
