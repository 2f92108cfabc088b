"""The licences-and-billed chart of a subscription page: geometry for an inline SVG, drawn
server-side (the template writes the elements; no script, no asset). Pure: it takes the
steps read from the ledger and returns coordinates and labels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 14, 30
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True, slots=True)
class Step:
    """The quantities from `at` on (one ledger entry's values after it)."""

    at: datetime
    licences: int
    billed: int


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css_class: str
    points: str  # an SVG polyline's `points`
    last: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    series: tuple[Series, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    now_x: float | None
    changes: int


def _nice_ceiling(value: int) -> tuple[int, int]:
    """An axis top at or above `value` and a tick step dividing it (at most ~5 ticks)."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if value <= step * 4:
            return max(step, -(-value // step) * step), step
    step = 10 ** len(str(value))
    return -(-value // step) * step, step


def _x(at: datetime, start: datetime, end: datetime) -> float:
    span = (end - start).total_seconds() or 1.0
    fraction = min(1.0, max(0.0, (at - start).total_seconds() / span))
    return round(LEFT + fraction * PLOT_WIDTH, 1)


def _points(
    values: list[tuple[datetime, int]], start: datetime, end: datetime, until: datetime, top: int
) -> str:
    def y(value: int) -> float:
        return round(TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT, 1)

    points: list[tuple[float, float]] = []
    previous: int | None = None
    for at, value in values:
        x = _x(at, start, end)
        if previous is not None:
            points.append((x, y(previous)))  # a step: hold the old value up to the change
        points.append((x, y(value)))
        previous = value
    if previous is not None:
        points.append((_x(until, start, end), y(previous)))
    return " ".join(f"{x:g},{y:g}" for x, y in points)


def step_chart(
    start: datetime,
    end: datetime,
    now: datetime,
    opening: tuple[int, int],
    steps: list[Step],
) -> Chart:
    """Licences and billed quantity from `start` (with the `opening` values) through each
    step, drawn up to `now` (or the period's end, if it is past)."""
    until = min(max(now, start), end)
    licences = [(start, opening[0])] + [(s.at, s.licences) for s in steps]
    billed = [(start, opening[1])] + [(s.at, s.billed) for s in steps]
    highest = max(value for _, value in licences + billed)
    top, step = _nice_ceiling(max(1, highest))
    y_ticks = tuple(
        Tick(round(TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT, 1), str(value))
        for value in range(0, top + 1, step)
    )
    span = end - start
    x_ticks = tuple(
        Tick(_x(start + span * i / 4, start, end), (start + span * i / 4).strftime("%d %b %Y"))
        for i in range(5)
    )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        plot_width=PLOT_WIDTH,
        plot_height=PLOT_HEIGHT,
        series=(  # billed drawn dashed over licences: both show where they are equal
            Series(
                "licences", "licences", _points(licences, start, end, until, top), licences[-1][1]
            ),
            Series("billed", "billed", _points(billed, start, end, until, top), billed[-1][1]),
        ),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        now_x=_x(now, start, end) if start <= now <= end else None,
        changes=len(steps),
    )
