"""Jinja filters of the dashboard: money in minor units, UTC times, ages."""

from __future__ import annotations

from datetime import datetime

# Stripe's zero-decimal currencies: their amounts are whole units.
ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip


def money(amount: int | None, currency: str | None) -> str:
    """`29,200` usd -> `292.00 USD`; zero-decimal currencies keep whole units."""
    if amount is None:
        return "—"
    code = (currency or "").lower()
    if code in ZERO_DECIMAL:
        text = f"{amount:,}"
    else:
        sign = "-" if amount < 0 else ""
        whole, cents = divmod(abs(amount), 100)
        text = f"{sign}{whole:,}.{cents:02d}"
    return f"{text} {code.upper()}".strip()


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "—"


def day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment is not None else "—"


def age(seconds: int | float | None) -> str:
    """`4000` -> `1 h 6 min`."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes % 60} min"
    return f"{minutes} min"


FILTERS = {"money": money, "when": when, "day": day, "age": age}
