"""Integer money arithmetic. Amounts are integer minor units; never floats."""

from __future__ import annotations

from fractions import Fraction


def round_half_away_from_zero(value: Fraction) -> int:
    """Round to the nearest minor unit, halves away from zero (as Stripe rounds prorations)."""
    magnitude = abs(value)
    whole = magnitude.numerator // magnitude.denominator
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return whole if value >= 0 else -whole
