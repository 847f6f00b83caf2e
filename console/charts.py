"""Charts as SVG, drawn on the server: no script, nothing loaded from elsewhere, allowed by the console's
Content-Security-Policy (presentation attributes only, no inline style). Each chart is an <svg> with a
<title> and an aria-label, and the numbers it shows are also written out beside it on the page."""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup, escape

WIDTH = 640
BAR_HEIGHT = 22
GAP = 8
LABEL_WIDTH = 170
# One colour per series of a daily chart, in order; CSS may override them through the classes.
COLOURS = ("#2f6db5", "#c2561a", "#2e8b57", "#8a3fa0")


def _svg(title: str, width: int, height: int, body: list[str]) -> Markup:
    label = escape(title)
    return Markup(f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}" '
                  f'width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{label}</title>'
                  + "".join(body) + "</svg>")


def bars(title: str, items: list[tuple[str, float, str]]) -> Markup:
    """Horizontal bars: (label, value, the value as shown)."""
    top = max((value for _, value, _ in items), default=0) or 1
    span = WIDTH - LABEL_WIDTH - 90
    body = []
    for row, (label, value, shown) in enumerate(items):
        y = row * (BAR_HEIGHT + GAP)
        length = max(0.0, value) / top * span
        body.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end" font-size="13">{escape(label)}</text>'
                    f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" '
                    f'fill="{COLOURS[0]}"><title>{escape(label)}: {escape(shown)}</title></rect>'
                    f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 15}" font-size="13">{escape(shown)}</text>')
    return _svg(title, WIDTH, max(1, len(items)) * (BAR_HEIGHT + GAP), body)


def daily(title: str, days: list[dt.date], series: dict[str, dict[dt.date, float]],
          show=lambda value: f"{value:g}") -> Markup:
    """Vertical bars per day, one bar per series side by side; a legend under the axis."""
    height, bottom, left = 220, 40, 48
    plot_width, plot_height = WIDTH - left - 10, height - bottom - 10
    top = max((value for values in series.values() for value in values.values()), default=0) or 1
    slot = plot_width / max(1, len(days))
    bar = max(1.0, slot * 0.8 / max(1, len(series)))
    body = [f'<line x1="{left}" y1="{10 + plot_height}" x2="{WIDTH - 10}" y2="{10 + plot_height}" stroke="#888"/>',
            f'<text x="{left - 4}" y="16" text-anchor="end" font-size="11">{escape(show(top))}</text>',
            f'<text x="{left - 4}" y="{10 + plot_height}" text-anchor="end" font-size="11">0</text>']
    label_every = max(1, len(days) // 8)
    for index, day in enumerate(days):
        x = left + index * slot
        for number, (name, values) in enumerate(series.items()):
            value = values.get(day, 0)
            if value:
                h = value / top * plot_height
                body.append(f'<rect class="bar series-{number}" x="{x + slot * 0.1 + number * bar:.1f}" '
                            f'y="{10 + plot_height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                            f'fill="{COLOURS[number % len(COLOURS)]}"><title>{day.isoformat()} {escape(name)}: '
                            f'{escape(show(value))}</title></rect>')
        if index % label_every == 0:
            body.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 24}" text-anchor="middle" '
                        f'font-size="10">{day.strftime("%m-%d")}</text>')
    for number, name in enumerate(series):
        x = left + number * 150
        body.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" fill="{COLOURS[number % len(COLOURS)]}"/>'
                    f'<text x="{x + 14}" y="{height - 3}" font-size="11">{escape(name)}</text>')
    return _svg(title, WIDTH, height, body)
