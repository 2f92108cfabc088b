"""The dashboard's pure parts: the chart's geometry, money formatting, the session key."""

from __future__ import annotations

from pydantic import SecretStr

from connector.config import DashboardSettings, Settings
from connector.dashboard import with_secret_key
from connector.dashboard.chart import LEFT, PLOT_HEIGHT, PLOT_WIDTH, TOP, Step, step_chart
from connector.dashboard.formatting import age, money
from tests.helpers import utc


def test_the_chart_steps_from_the_opening_values_through_each_change_up_to_now() -> None:
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    chart = step_chart(
        start,
        end,
        now=utc(2026, 7, 2, 12),  # half-way
        opening=(10, 10),
        steps=[Step(utc(2026, 7, 2, 12), 13, 13)],
    )
    licences = next(s for s in chart.series if s.name == "licences")
    bottom = TOP + PLOT_HEIGHT
    y10, y13 = bottom - 10 / 15 * PLOT_HEIGHT, bottom - 13 / 15 * PLOT_HEIGHT
    middle = LEFT + PLOT_WIDTH / 2
    expected = [(LEFT, y10), (middle, y10), (middle, y13), (middle, y13)]
    points = [tuple(float(v) for v in p.split(",")) for p in licences.points.split()]
    assert len(points) == len(expected)
    for (x, y), (want_x, want_y) in zip(points, expected, strict=True):
        assert abs(x - want_x) <= 0.1 and abs(y - want_y) <= 0.1
    assert [tick.label for tick in chart.y_ticks] == ["0", "5", "10", "15"]
    assert chart.x_ticks[0].label == "01 Jan 2026" and chart.x_ticks[-1].label == "01 Jan 2027"
    assert chart.now_x == round(middle, 1) and licences.last == 13


def test_a_chart_without_changes_is_a_flat_line_and_never_leaves_the_period() -> None:
    chart = step_chart(utc(2026, 1, 1), utc(2026, 2, 1), utc(2026, 3, 1), (0, 5), [])
    billed = next(s for s in chart.series if s.name == "billed")
    xs = [float(p.split(",")[0]) for p in billed.points.split()]
    assert xs == [LEFT, LEFT + PLOT_WIDTH] and chart.now_x is None and chart.changes == 0


def test_money_is_shown_in_major_units_and_ages_in_words() -> None:
    assert money(29200, "usd") == "292.00 USD"
    assert money(-123456, "eur") == "-1,234.56 EUR"
    assert money(5000, "jpy") == "5,000 JPY"
    assert age(4000) == "1 h 6 min" and age(59) == "59 s" and age(None) == "—"


def test_an_empty_session_key_is_made_once_and_a_set_one_is_kept() -> None:
    empty = Settings(database_url="sqlite://")
    made = with_secret_key(empty)
    secret = made.dashboard.secret_key.get_secret_value()
    assert len(secret) >= 32 and with_secret_key(made) is made
    assert with_secret_key(empty).dashboard.secret_key.get_secret_value() != secret
    chosen = Settings(
        database_url="sqlite://", dashboard=DashboardSettings(secret_key=SecretStr("s" * 40))
    )
    assert with_secret_key(chosen) is chosen
