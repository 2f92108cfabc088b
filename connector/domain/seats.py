"""Licences, holders and billed quantity of one seat type (BILLING_RULES sections 2, 3, 5, 7)."""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Policy(StrEnum):
    """How licences move when holders are assigned (BILLING_RULES section 2)."""

    AUTO = "auto"  # assigning with no free licence buys one; licences follow holders
    MANUAL = "manual"  # licences are bought and released explicitly
    TRUE_UP = "true_up"  # assigning beyond the licences over-allocates; settled at true-up


class HolderState(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    ARCHIVED = "archived"


class BilledPer(StrEnum):
    """What one licence of a seat type is for (seed 004)."""

    USER = "user"  # holders are users (or numbers, ...)
    TEAM = "team"  # team licences (variant 1): holders are teams, their ids are team ids


def occupies_licence(
    state: HolderState,
    groups: Iterable[str] = (),
    *,
    membership_required: bool = False,
    archived_groups: Container[str] = frozenset(),
    team_id: str | None = None,
) -> bool:
    """Whether a holder takes a licence.

    Only active holders do (seed 003: 10 licences, 8 active users = 2 free). Under user
    licences billed by team membership (seed 004, variant 2) an active holder also needs
    at least one group (team) that is not archived. Under team licences (variant 1) the
    holder is the team `team_id` itself: an archived team takes no licence.
    """
    if state is not HolderState.ACTIVE:
        return False
    if team_id is not None and team_id in archived_groups:
        return False
    if not membership_required:
        return True
    return any(group not in archived_groups for group in groups)


class SeatRefusal(Exception):
    """A seat change the rules refuse. `code` is stable for callers; `message` tells a person
    what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SeatTerms:
    """The contract terms of one seat type."""

    policy: Policy
    floor: int  # included in plan / minimum commitment, billed even when unused
    extra_seats_allowed: bool = True  # a plan tier may forbid buying seats (seed 001, Solo)


@dataclass(frozen=True, slots=True)
class SeatCounts:
    """Where one seat type stands within the current period.

    `licences` are the licences held now (what renews, for manual and true_up);
    `peak` the highest licence count reached this period (what has been paid for);
    `in_use` the holders occupying a licence.
    """

    licences: int
    peak: int
    in_use: int

    def __post_init__(self) -> None:
        if min(self.licences, self.peak, self.in_use) < 0 or self.peak < self.licences:
            raise ValueError(f"inconsistent seat counts: {self}")


def at_least_floor(floor: int, quantity: int) -> int:
    """The contract floor is billed even when fewer are used: max(floor, quantity). The one
    place that rule is written."""
    return max(floor, quantity)


def paid_when_linked(held: int, highest_billed: int, credited: bool) -> int:
    """What counts as paid for the current period when an existing subscription is linked.

    After a decrease pushed without proration Stripe holds less than it billed, and the
    customer has paid for the higher quantity (re-adding up to it is free). A credit
    proration in the period (a decrease Stripe prorated, invoiced or still pending) gives the
    unused time back: then only what Stripe holds now is paid, and re-adding is charged."""
    if credited:
        return held
    return max(held, highest_billed)


def billed_now(terms: SeatTerms, counts: SeatCounts) -> int:
    """Quantity billed for the current period: max(floor, peak). Never lowered mid-period."""
    return at_least_floor(terms.floor, counts.peak)


def additional_units(terms: SeatTerms, counts: SeatCounts) -> int:
    """Seed 000's third column: billed beyond the floor this period."""
    return max(0, billed_now(terms, counts) - terms.floor)


def additional_units_at_renewal(terms: SeatTerms, counts: SeatCounts) -> int:
    return max(0, billed_at_renewal(terms, counts) - terms.floor)


def free_licences(counts: SeatCounts) -> int:
    return max(0, counts.licences - counts.in_use)


def over_allocation(counts: SeatCounts) -> int:
    """Holders beyond the licences (only the true_up policy lets this grow above zero)."""
    return max(0, counts.in_use - counts.licences)


def licences_at_renewal(terms: SeatTerms, counts: SeatCounts) -> int:
    """Licences the next period starts with. Under `auto`, free licences lapse at renewal."""
    if terms.policy is Policy.AUTO:
        return counts.in_use
    return counts.licences


def billed_at_renewal(terms: SeatTerms, counts: SeatCounts) -> int:
    """What the renewal invoice must bill: max(floor, licences at renewal).

    It is also the quantity the Stripe item holds during the period: decreases go out at
    once without proration so that the renewal bills them, while the connector keeps the
    period's paid peak itself; an increase above the peak raises both.
    """
    return at_least_floor(terms.floor, licences_at_renewal(terms, counts))


def renew(terms: SeatTerms, counts: SeatCounts) -> SeatCounts:
    """Counts at the start of the next period: the peak restarts from the licence count."""
    licences = licences_at_renewal(terms, counts)
    return SeatCounts(licences=licences, peak=licences, in_use=counts.in_use)


def _with_licences(counts: SeatCounts, licences: int, in_use: int) -> SeatCounts:
    return SeatCounts(licences=licences, peak=max(counts.peak, licences), in_use=in_use)


def buy(terms: SeatTerms, counts: SeatCounts, quantity: int) -> SeatCounts:
    """Buy `quantity` licences. Up to the period's peak this costs nothing (rule 3)."""
    if quantity < 1:
        raise SeatRefusal("invalid_quantity", "quantity must be a whole number of at least 1")
    if terms.policy is Policy.AUTO:
        raise SeatRefusal(
            "licences_follow_holders",
            "licences of an `auto` seat type follow its holders: assign a holder instead",
        )
    new_licences = counts.licences + quantity
    if not terms.extra_seats_allowed and new_licences > billed_now(terms, counts):
        raise SeatRefusal(
            "plan_forbids_extra_seats", "plan does not allow additional seats — upgrade"
        )
    return _with_licences(counts, new_licences, counts.in_use)


def release(terms: SeatTerms, counts: SeatCounts, quantity: int) -> SeatCounts:
    """Release `quantity` free licences. No credit: billed stays at the peak until renewal."""
    if quantity < 1:
        raise SeatRefusal("invalid_quantity", "quantity must be a whole number of at least 1")
    if terms.policy is Policy.AUTO:
        raise SeatRefusal(
            "licences_follow_holders",
            "licences of an `auto` seat type follow its holders: unassign a holder instead; "
            "its licence lapses at renewal",
        )
    if quantity > free_licences(counts):
        raise SeatRefusal(
            "licence_in_use",
            f"only {free_licences(counts)} licence(s) are free: licence in use — "
            "remove the holder first",
        )
    return SeatCounts(licences=counts.licences - quantity, peak=counts.peak, in_use=counts.in_use)


def occupy(terms: SeatTerms, counts: SeatCounts) -> SeatCounts:
    """A holder starts occupying a licence (assigned active, or re-activated)."""
    in_use = counts.in_use + 1
    if in_use <= counts.licences:
        return SeatCounts(licences=counts.licences, peak=counts.peak, in_use=in_use)
    if terms.policy is Policy.MANUAL:
        raise SeatRefusal("no_free_licence", "no free licence — purchase first")
    if terms.policy is Policy.TRUE_UP:
        return SeatCounts(licences=counts.licences, peak=counts.peak, in_use=in_use)
    # auto: buys one licence at once
    if not terms.extra_seats_allowed and counts.licences + 1 > billed_now(terms, counts):
        raise SeatRefusal(
            "plan_forbids_extra_seats", "plan does not allow additional seats — upgrade"
        )
    return _with_licences(counts, counts.licences + 1, in_use)


def vacate(counts: SeatCounts) -> SeatCounts:
    """A holder stops occupying a licence (unassigned, deactivated, archived).

    The licence becomes free; under `auto` it lapses at renewal (see licences_at_renewal).
    """
    if counts.in_use < 1:
        raise ValueError("no licence is in use")
    return SeatCounts(licences=counts.licences, peak=counts.peak, in_use=counts.in_use - 1)
