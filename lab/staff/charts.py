"""Server-side SVG bar charts for the staff pages: no script, so they render under the pages' CSP.

Each chart has a <title> and <desc> (read by screen readers), and each bar a <title> with its exact value.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 220
MARGIN_LEFT = 48
MARGIN_BOTTOM = 40
MARGIN_TOP = 12


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    href: str = ""
    is_warning: bool = False


def _number(value: float) -> str:
    return f"{value:g}"


def bar_chart(
    *, title: str, bars: list[Bar], unit: str = "", reference: float | None = None, reference_label: str = ""
) -> SafeString:
    """Vertical bars scaled to the largest value (or the reference line, when higher)."""
    plot_width = WIDTH - MARGIN_LEFT - 8
    plot_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    top = max([bar.value for bar in bars] + [reference or 0, 1])
    slot = plot_width / max(len(bars), 1)
    bar_width = max(slot * 0.7, 1)
    summary = ", ".join(f"{bar.label}: {_number(bar.value)}{unit}" for bar in bars) or "no data"
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title><desc>{escape(summary)}</desc>",
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_height}" x2="{WIDTH - 8}" '
        f'y2="{MARGIN_TOP + plot_height}"/>',
        f'<text class="chart-tick" x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + 4}" text-anchor="end">'
        f"{_number(round(top, 1))}{escape(unit)}</text>",
        f'<text class="chart-tick" x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + plot_height}" '
        'text-anchor="end">0</text>',
    ]
    label_every = max(1, len(bars) // 12)  # keep axis labels legible on long ranges
    for index, bar in enumerate(bars):
        height = plot_height * bar.value / top
        x = MARGIN_LEFT + index * slot + (slot - bar_width) / 2
        y = MARGIN_TOP + plot_height - height
        css = "bar warn" if bar.is_warning else "bar"
        rect = (
            f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" height="{height:.1f}">'
            f"<title>{escape(bar.label)}: {_number(bar.value)}{escape(unit)}</title></rect>"
        )
        parts.append(f'<a href="{escape(bar.href)}">{rect}</a>' if bar.href else rect)
        if index % label_every == 0:
            parts.append(
                f'<text class="label" x="{x + bar_width / 2:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 14}" '
                f'text-anchor="middle">{escape(bar.label)}</text>'
            )
    if reference is not None:
        y = MARGIN_TOP + plot_height - plot_height * reference / top
        parts.append(
            f'<line class="reference" x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}">'
            f"<title>{escape(reference_label)}</title></line>"
            f'<text class="reference-label" x="{WIDTH - 10}" y="{y - 4:.1f}" text-anchor="end">'
            f"{escape(reference_label)}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]  # one per label; None leaves a gap


def _frame(title: str, summary: str) -> list[str]:
    return [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title><desc>{escape(summary or 'no data')}</desc>",
    ]


def _legend(names: list[str], *, y: float) -> list[str]:
    parts = []
    step = (WIDTH - MARGIN_LEFT) / max(len(names), 1)
    for index, name in enumerate(names):
        x = MARGIN_LEFT + index * step
        parts.append(
            f'<rect class="series-{index}" x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10"/>'
            f'<text class="legend" x="{x + 14:.1f}" y="{y:.1f}">{escape(name)}</text>'
        )
    return parts


def line_chart(*, title: str, labels: list[str], series: list[Series], unit: str = "") -> SafeString:
    """One line per series over shared x labels (hours, days), scaled to the largest value; a legend below."""
    plot_width = WIDTH - MARGIN_LEFT - 24  # room for the last label, centred on the last point
    plot_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP - 14  # room for the legend
    values = [value for line in series for value in line.values if value is not None]
    top = max([*values, 1e-9]) if values and max(values) > 0 else 1.0
    step = plot_width / max(len(labels) - 1, 1)
    summary = "; ".join(
        f"{line.name}: "
        + ", ".join(
            f"{label} {_number(round(value, 3))}{unit}"
            for label, value in zip(labels, line.values, strict=True)
            if value is not None
        )
        for line in series
    )
    bottom = MARGIN_TOP + plot_height
    parts = [
        *_frame(title, summary),
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{bottom}" x2="{WIDTH - 8}" y2="{bottom}"/>',
        f'<text class="chart-tick" x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + 4}" text-anchor="end">'
        f"{_number(round(top, 3))}{escape(unit)}</text>",
        f'<text class="chart-tick" x="{MARGIN_LEFT - 4}" y="{bottom}" text-anchor="end">0</text>',
    ]
    label_every = max(1, len(labels) // 12)
    for index, label in enumerate(labels):
        if index % label_every == 0:
            parts.append(
                f'<text class="label" x="{MARGIN_LEFT + index * step:.1f}" y="{bottom + 14}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    for number, line in enumerate(series):
        points = [
            (MARGIN_LEFT + index * step, bottom - plot_height * value / top, label, value)
            for index, (label, value) in enumerate(zip(labels, line.values, strict=True))
            if value is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            parts.append(f'<polyline class="line series-{number}" points="{path}"/>')
        parts.extend(
            f'<circle class="point series-{number}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
            f"<title>{escape(line.name)} {escape(label)}: {_number(round(value, 3))}{escape(unit)}</title>"
            "</circle>"
            for x, y, label, value in points
        )
    parts.extend(_legend([line.name for line in series], y=HEIGHT - 6))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


@dataclass(frozen=True)
class StackedBar:
    label: str
    parts: list[float]  # one per segment name
    href: str = ""


def stacked_bar_chart(
    *, title: str, segments: list[str], bars: list[StackedBar], unit: str = ""
) -> SafeString:
    """One horizontal bar per row, split into segments (each a share of the row's total); a legend below."""
    label_width = 110
    row_height = 22
    plot_width = WIDTH - label_width - 8
    height = MARGIN_TOP + row_height * max(len(bars), 1) + 30
    summary = "; ".join(
        f"{bar.label}: "
        + ", ".join(f"{name} {_number(value)}{unit}" for name, value in zip(segments, bar.parts, strict=True))
        for bar in bars
    )
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title><desc>{escape(summary or 'no data')}</desc>",
    ]
    for row, bar in enumerate(bars):
        y = MARGIN_TOP + row * row_height
        total = sum(bar.parts) or 1.0
        label = (
            f'<text class="label" x="{label_width - 6}" y="{y + 13}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
        )
        parts.append(f'<a href="{escape(bar.href)}">{label}</a>' if bar.href else label)
        x = float(label_width)
        for index, (name, value) in enumerate(zip(segments, bar.parts, strict=True)):
            width = plot_width * value / total
            if width > 0:
                parts.append(
                    f'<rect class="series-{index}" x="{x:.1f}" y="{y}" width="{width:.1f}" '
                    f'height="{row_height - 6}"><title>{escape(bar.label)} {escape(name)}: '
                    f"{_number(value)}{escape(unit)}</title></rect>"
                )
            x += width
    parts.extend(_legend(segments, y=height - 6))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above
