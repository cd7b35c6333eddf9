"""Small charts drawn with Pillow (a torchvision dependency): no plotting library needed.

:func:`chart_image` draws point or line series with optional error bars and per-point
labels on linear axes; :func:`save_png` writes the image. TensorBoard takes the same array
(``SummaryWriter.add_image(tag, image, dataformats="HWC")``).

Example:
    >>> image = chart_image([ChartSeries("tau", [1, 2, 3], [0.2, 0.4, 0.5])], x_label="epochs")
    >>> save_png(image, "experiments/results/tau.png")
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    """

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    errors: Sequence[float] | None = None
    lines: bool = False
    labels: Sequence[str | None] | None = None
    color: tuple[int, int, int] | None = None


def _axis_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.06 or max(abs(high) * 0.05, 1e-3)
    return low - pad, high + pad


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
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 70, 20, 34, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    xs = [float(x) for s in series for x in s.xs]
    ys = [
        float(y) + sign * float(e)
        for s in series
        for y, e in zip(s.ys, s.errors or [0.0] * len(s.ys), strict=True)
        for sign in (-1, 1)
    ]
    draw.text((left, 4), title, fill="black")
    if not xs:
        draw.text((left, top + 10), "no data", fill="black")
        return np.asarray(image)
    x_lo, x_hi = _axis_range(xs)
    y_lo, y_hi = _axis_range(ys)

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return px, py

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        x = x_lo + (x_hi - x_lo) * i / 4
        y = y_lo + (y_hi - y_lo) * i / 4
        px, _ = to_pixel(x, y_lo)
        _, py = to_pixel(x_lo, y)
        draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
        draw.text((px - 14, height - bottom + 7), f"{x:.4g}", fill="black")
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((6, py - 6), f"{y:.4g}", fill="black")
    draw.text(((width - len(x_label) * 6) // 2, height - 20), x_label, fill="black")
    draw.text((6, top - 14), y_label, fill="black")
    if diagonal:
        low, high = max(x_lo, y_lo), min(x_hi, y_hi)
        if low < high:
            draw.line([to_pixel(low, low), to_pixel(high, high)], fill=(170, 170, 170))

    legend_y = top + 6
    for index, item in enumerate(series):
        color = item.color or PALETTE[index % len(PALETTE)]
        points = [to_pixel(float(x), float(y)) for x, y in zip(item.xs, item.ys, strict=True)]
        errors = item.errors or [0.0] * len(points)
        for (x, y), (px, _py), error in zip(
            zip(item.xs, item.ys, strict=True), points, errors, strict=True
        ):
            if error:
                _, top_py = to_pixel(float(x), float(y) + float(error))
                _, low_py = to_pixel(float(x), float(y) - float(error))
                draw.line([px, top_py, px, low_py], fill=color)
                draw.line([px - 3, top_py, px + 3, top_py], fill=color)
                draw.line([px - 3, low_py, px + 3, low_py], fill=color)
        if item.lines and len(points) > 1:
            draw.line(points, fill=color, width=2)
        else:
            for px, py in points:
                draw.ellipse([px - 4, py - 4, px + 4, py + 4], outline=color, width=2)
        for (px, py), label in zip(points, item.labels or [None] * len(points), strict=True):
            if label:
                draw.text((px + 6, py - 12), label, fill=color)
        if item.name:
            draw.line([left + 10, legend_y + 6, left + 30, legend_y + 6], fill=color, width=3)
            draw.text((left + 36, legend_y), item.name, fill="black")
            legend_y += 16
    return np.asarray(image)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array as a PNG file (atomically); returns the path."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
