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
