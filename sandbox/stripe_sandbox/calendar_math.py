"""Billing-period arithmetic and integer money rounding for the sandbox double.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Periods follow Stripe's anchor rule: the n-th period ends n intervals after
the billing cycle anchor, with the day clamped to the month's last day (an
anchor on the 31st bills on 28/29 Feb and back on 31 Mar), so periods never
drift.  Money is integer minor units; prorations use exact fractions and round
half away from zero, never floats.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from fractions import Fraction


def add_interval(anchor: int, interval: str, count: int) -> int:
    """``anchor`` plus ``count`` months/years/weeks/days, clamped like Stripe."""
    dt = datetime.fromtimestamp(anchor, UTC)
    if interval in ("month", "year"):
        months = count * (12 if interval == "year" else 1)
        total = dt.year * 12 + (dt.month - 1) + months
        year, month = divmod(total, 12)
        month += 1
        day = min(dt.day, calendar.monthrange(year, month)[1])
        return int(dt.replace(year=year, month=month, day=day).timestamp())
    if interval == "week":
        return anchor + count * 7 * 86400
    if interval == "day":
        return anchor + count * 86400
    raise ValueError(f"unknown interval {interval}")


def period_end(anchor: int, interval: str, interval_count: int, index: int) -> int:
    """End of the ``index``-th period (0-based) after ``anchor``."""
    return add_interval(anchor, interval, interval_count * (index + 1))


def round_half_away(value: Fraction) -> int:
    """Round to the nearest integer, halves away from zero (Stripe's minor-unit rounding)."""
    sign = -1 if value < 0 else 1
    mag = abs(value)
    whole = mag.numerator // mag.denominator
    if mag - whole >= Fraction(1, 2):
        whole += 1
    return sign * whole


def prorate(quantity: int, unit_amount: int, start: int, end: int, at: int) -> int:
    """``quantity * unit * (end - at) / (end - start)``, rounded to the minor unit."""
    if end <= start:
        return 0
    return round_half_away(Fraction(quantity * unit_amount * (end - at), end - start))


def fmt_date(ts: int) -> str:
    """Stripe's invoice-line date style: ``15 Mar 2026``."""
    dt = datetime.fromtimestamp(ts, UTC)
    return f"{dt.day} {dt.strftime('%b')} {dt.year}"


_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "chf": "CHF ", "jpy": "¥"}
_ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp", "xof", "xaf", "ugx", "rwf", "pyg"}


def fmt_money(amount: int, currency: str) -> str:
    """Display an integer minor-unit amount (``12000``, ``usd`` -> ``$120.00``)."""
    sym = _SYMBOLS.get(currency, currency.upper() + " ")
    sign = "-" if amount < 0 else ""
    mag = abs(amount)
    if currency in _ZERO_DECIMAL:
        return f"{sign}{sym}{mag:,}"
    return f"{sign}{sym}{mag // 100:,}.{mag % 100:02d}"


def iso(ts: int | None) -> str | None:
    """UTC ISO-8601 for human-readable overviews."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
