"""Small charts drawn with Pillow (a torchvision dependency): no plotting library needed.

:func:`chart_image` draws point or line series with optional error bars and per-point
labels on linear axes, with ticks at round values, a light grid and text in Pillow's
scalable default font (sized to the image, so a 960x640 chart reads at TensorBoard's
size); :func:`save_png` writes the image. TensorBoard takes the same array
(``SummaryWriter.add_image(tag, image, dataformats="HWC")``).

Example:
    >>> image = chart_image([ChartSeries("tau", [1, 2, 3], [0.2, 0.4, 0.5])], x_label="epochs")
    >>> save_png(image, "experiments/results/tau.png")
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasfuse.files import atomic_write_bytes

__all__ = ["ChartSeries", "chart_image", "save_png", "PALETTE"]

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))


@dataclass
class ChartSeries:
    """One series of a chart.

    Attributes:
        name: shown in the legend (empty: not listed).
        xs, ys: the points.
        errors: half-heights of error bars (or a band for lines), same length as ``ys``.
        lines: join the points (in the given order) instead of drawing markers.
        labels: a short text next to each point (None or "" for none).
        color: RGB; None: the next colour of :data:`PALETTE`.
        marker: ``circle``, ``square``, ``diamond`` or ``star`` (points only).
        marker_size: half-width of a marker in pixels.
        filled: fill the markers.
    """

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    errors: Sequence[float] | None = None
    lines: bool = False
    labels: Sequence[str | None] | None = None
    color: tuple[int, int, int] | None = None
    marker: str = "circle"
    marker_size: float = 4.0
    filled: bool = False


MARKERS = ("circle", "square", "diamond", "star")


def _marker(draw: object, px: float, py: float, item: ChartSeries, color: tuple) -> None:
    r = item.marker_size
    fill = color if item.filled else None
    if item.marker == "square":
        draw.rectangle([px - r, py - r, px + r, py + r], outline=color, fill=fill, width=2)
    elif item.marker == "diamond":
        shape = [(px, py - r * 1.3), (px + r * 1.3, py), (px, py + r * 1.3), (px - r * 1.3, py)]
        draw.polygon(shape, outline=color, fill=fill, width=2)
    elif item.marker == "star":
        draw.regular_polygon((px, py, r * 1.5), 5, outline=color, fill=fill, width=2)
        draw.regular_polygon((px, py, r * 1.5), 5, rotation=36, outline=color, fill=fill)
    else:
        draw.ellipse([px - r, py - r, px + r, py + r], outline=color, fill=fill, width=2)


def nice_ticks(low: float, high: float, count: int = 7) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten) in [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    # The round step whose number of intervals comes closest to the one asked for.
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda v: abs((high - low) / v - count + 1))
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_text(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:.{min(decimals, 6)}f}"


def _axis_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.06 or max(abs(high) * 0.05, 1e-3)
    return low - pad, high + pad


@dataclass(frozen=True)
class _Frame:
    """Where the plot sits in the image and which values its edges stand for."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        px = self.left + (x - self.x_lo) / (self.x_hi - self.x_lo) * (
            self.width - self.left - self.right
        )
        py = (
            self.height
            - self.bottom
            - (y - self.y_lo) / (self.y_hi - self.y_lo) * (self.height - self.top - self.bottom)
        )
        return px, py


def chart_image(
    series: Sequence[ChartSeries],
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    size: tuple[int, int] = (720, 480),
    diagonal: bool = False,
) -> np.ndarray:
    """Draw ``series`` on shared linear axes.

    Args:
        series: what to draw, in order (later series on top).
        title, x_label, y_label: texts around the plot.
        size: ``(width, height)`` in pixels.
        diagonal: also draw the line y = x (grey), e.g. for two scorings of one thing.

    Returns:
        uint8 RGB array of shape ``(height, width, 3)``.
    """
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    # Text scales with the image: 15 px at 640 px high.
    font_px = max(11, round(height * 15 / 640))
    font = ImageFont.load_default(size=font_px)
    small = ImageFont.load_default(size=max(10, font_px - 2))
    left, right = int(font_px * 5.2), int(font_px * 1.5)
    top, bottom = int(font_px * 4.0), int(font_px * 3.6)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    xs = [float(x) for s in series for x in s.xs]
    ys = [
        float(y) + sign * float(e)
        for s in series
        for y, e in zip(s.ys, s.errors or [0.0] * len(s.ys), strict=True)
        for sign in (-1, 1)
    ]
    draw.text((left, font_px * 0.6), title, fill="black", font=font)
    if not xs:
        draw.text((left, top + 10), "no data", fill="black", font=font)
        return np.asarray(image)
    frame = _Frame(width, height, left, right, top, bottom, *_axis_range(xs), *_axis_range(ys))
    _draw_axes(draw, frame, font, font_px, x_label, y_label)
    if diagonal:
        low, high = max(frame.x_lo, frame.y_lo), min(frame.x_hi, frame.y_hi)
        if low < high:
            draw.line([frame.to_pixel(low, low), frame.to_pixel(high, high)], fill=(170, 170, 170))
    legend: list[tuple[ChartSeries, tuple[int, int, int]]] = []
    labels: list[tuple[tuple[float, float], str, tuple[int, int, int]]] = []
    for index, item in enumerate(series):
        color = item.color or PALETTE[index % len(PALETTE)]
        labels.extend(_draw_series(draw, frame, item, color))
        if item.name:
            legend.append((item, color))
    # Labels last, so that no marker or line of a later series hides them.
    for anchor_xy, label, color in labels:
        draw.text(anchor_xy, label, fill=color, font=small, anchor="ld")
    if legend:
        _draw_legend(draw, legend, float(left), font_px * 2.4, font, font_px)
    return np.asarray(image)


def _draw_axes(
    draw: Any, frame: _Frame, font: Any, font_px: int, x_label: str, y_label: str
) -> None:
    """Grid lines, ticks and their values, the plot's border and the axis labels."""
    left, right, top, bottom = frame.left, frame.right, frame.top, frame.bottom
    width, height = frame.width, frame.height
    x_ticks, y_ticks = nice_ticks(frame.x_lo, frame.x_hi), nice_ticks(frame.y_lo, frame.y_hi)
    for x in x_ticks:
        px, _ = frame.to_pixel(x, frame.y_lo)
        draw.line([px, top, px, height - bottom], fill=(232, 232, 232))
        draw.line([px, height - bottom, px, height - bottom + 5], fill="black")
        draw.text(
            (px, height - bottom + 7), _tick_text(x, x_ticks), fill="black", font=font, anchor="ma"
        )
    for y in y_ticks:
        _, py = frame.to_pixel(frame.x_lo, y)
        draw.line([left, py, width - right, py], fill=(232, 232, 232))
        draw.line([left - 5, py, left, py], fill="black")
        draw.text((left - 8, py), _tick_text(y, y_ticks), fill="black", font=font, anchor="rm")
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text(
        ((left + width - right) / 2, height - font_px * 0.4),
        x_label,
        fill="black",
        font=font,
        anchor="md",
    )
    draw.text((left - 8, top - 6), y_label, fill="black", font=font, anchor="rd")


def _draw_series(
    draw: Any, frame: _Frame, item: ChartSeries, color: tuple[int, int, int]
) -> list[tuple[tuple[float, float], str, tuple[int, int, int]]]:
    """One series' error bars and its line or markers; returns its point labels (where,
    text, colour), which the caller draws after every series."""
    points = [frame.to_pixel(float(x), float(y)) for x, y in zip(item.xs, item.ys, strict=True)]
    errors = item.errors or [0.0] * len(points)
    for (x, y), (px, _py), error in zip(
        zip(item.xs, item.ys, strict=True), points, errors, strict=True
    ):
        if error:
            _, top_py = frame.to_pixel(float(x), float(y) + float(error))
            _, low_py = frame.to_pixel(float(x), float(y) - float(error))
            draw.line([px, top_py, px, low_py], fill=color)
            draw.line([px - 3, top_py, px + 3, top_py], fill=color)
            draw.line([px - 3, low_py, px + 3, low_py], fill=color)
    if item.lines and len(points) > 1:
        draw.line(points, fill=color, width=2)
    else:
        for px, py in points:
            _marker(draw, px, py, item, color)
    offset = item.marker_size + 3
    return [
        ((px + offset, py - offset), label, color)
        for (px, py), label in zip(points, item.labels or [None] * len(points), strict=True)
        if label
    ]


def _draw_legend(
    draw: Any,
    legend: Sequence[tuple[ChartSeries, tuple[int, int, int]]],
    x: float,
    cy: float,
    font: Any,
    font_px: int,
) -> None:
    """One row from ``(x, cy)``: above the plot, under the title (inside the plot it would
    hide points)."""
    for item, color in legend:
        if item.lines:
            draw.line([x, cy, x + 22, cy], fill=color, width=3)
        else:
            small_item = dataclasses.replace(item, marker_size=min(item.marker_size, 5.0))
            _marker(draw, x + 11, cy, small_item, color)
        draw.text((x + 28, cy), item.name, fill="black", font=font, anchor="lm")
        x += 28 + draw.textlength(item.name, font=font) + font_px * 1.5


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array as a PNG file (atomically); returns the path."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
