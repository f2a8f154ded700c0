"""Charts drawn on the server as SVG geometry: no chart library, no script, nothing inline that a
strict Content-Security-Policy would refuse. Functions here are pure: they turn figures into
shapes; the templates (``partials/charts.html``) draw the shapes.

A figure of ``None`` is a suppressed figure: it gets no bar and is labelled as suppressed, so a
chart never shows more than its table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

MAX_AXIS_LABELS = 12


@dataclasses.dataclass(frozen=True)
class Bar:
    label: str
    value: int | float | None
    x: float
    y: float
    width: float
    height: float

    @property
    def suppressed(self) -> bool:
        return self.value is None


@dataclasses.dataclass(frozen=True)
class BarChart:
    """Horizontal bars, one per row: label on the left, bar and value to its right."""

    title: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    row_height: int
    scale_max: float


@dataclasses.dataclass(frozen=True)
class Point:
    label: str
    value: int | float | None
    x: float
    y: float
    labelled: bool = True  # whether the axis shows its label (thinned out on long series)


@dataclasses.dataclass(frozen=True)
class Tick:
    value: float
    y: float


@dataclasses.dataclass(frozen=True)
class LineChart:
    """A line over time: one point per period, the line broken where a figure is suppressed."""

    title: str
    points: tuple[Point, ...]
    segments: tuple[str, ...]  # SVG polyline "points" attributes, one per unbroken run
    ticks: tuple[Tick, ...]
    width: int
    height: int
    left: int
    bottom: int


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, int | float | None]],
    width: int = 640,
    label_width: int = 240,
    row_height: int = 28,
) -> BarChart:
    """A horizontal bar chart of ``rows`` (label, value), in the order given."""
    values = [value for _, value in rows if value is not None]
    scale_max = max(values, default=0) or 1
    room = width - label_width - 60  # the value is written after the bar
    bars = tuple(
        Bar(
            label=label,
            value=value,
            x=label_width,
            y=index * row_height + 4,
            width=0 if value is None else round(room * value / scale_max, 1),
            height=row_height - 8,
        )
        for index, (label, value) in enumerate(rows)
    )
    height = max(len(rows), 1) * row_height
    return BarChart(title, bars, width, height, label_width, row_height, scale_max)


def line_chart(
    title: str,
    series: Sequence[tuple[str, int | float | None]],
    width: int = 640,
    height: int = 220,
    left: int = 48,
    bottom: int = 40,
) -> LineChart:
    """A line chart of ``series`` (period label, value) with a y axis from 0 to a round top."""
    values = [value for _, value in series if value is not None]
    top = nice_ceiling(max(values, default=0))
    plot_width = width - left - 16
    plot_height = height - bottom - 16
    step = plot_width / max(len(series) - 1, 1)
    every = max(1, math.ceil(len(series) / MAX_AXIS_LABELS))
    points = tuple(
        Point(
            label=label,
            value=value,
            x=round(left + index * step, 1),
            y=round(16 + plot_height * (1 - (value or 0) / top), 1),
            labelled=index % every == 0,
        )
        for index, (label, value) in enumerate(series)
    )
    ticks = tuple(
        Tick(value=top * i / 4, y=round(16 + plot_height * (1 - i / 4), 1)) for i in range(5)
    )
    return LineChart(title, points, _segments(points), ticks, width, height, left, bottom)


def nice_ceiling(value: float) -> float:
    """The top of a count axis: the smallest of 1, 2, 4, 5 or 8 times a power of ten that is at
    least ``value`` and divisible by 4 (at least 4), so the ticks at quarters are whole numbers."""
    power = 1
    while True:
        for factor in (1, 2, 4, 5, 8):
            top = factor * power
            if top >= value and top % 4 == 0:
                return top
        power *= 10


def _segments(points: Sequence[Point]) -> tuple[str, ...]:
    runs: list[list[Point]] = [[]]
    for point in points:
        if point.value is None:
            runs.append([])
        else:
            runs[-1].append(point)
    return tuple(" ".join(f"{p.x},{p.y}" for p in run) for run in runs if run)
