"""The model that hunts the rest: random seat changes, clock moves, Stripe faults, crashed
and stopped workers and ops actions, driven through the real connector (HTTP API, outbox
drain, renewals job) into the Stripe double; after every step the sync settles and what
Stripe holds must be what the reference model (tests/model/reference.py, written from
BILLING_RULES alone) says is owed.

Drawn per example: billing mode (flexible, classic), yearly or monthly price, one or two
seat types (policy manual or auto, floor, licences, unit price), the anchor, the contract's
30-day threshold, day or per-second proration and billing time zone. Steps: buy, release,
assign, (de)activate, unassign, each with a fault (Stripe 500, 429 lock_timeout, timeout
before or after the write applies, 500 on the read, a worker killed before or after its
write, a 400 that dead-letters a charge, a declined card, the caller repeating the request
with its Idempotency-Key, the worker down until a later step); the clock (hours to weeks,
to the 30-day line, across renewals); ops resync, retry or write-off of a dead letter.

Invariants, after every step that changed something (per seat type, per period so far):
- money: Stripe's lines (invoices that are not void, plus pending invoice items) for the
  period equal the model's charges, to the cent within one minor unit per charge (Stripe
  rounds each proration line on its own), in three buckets: what the first or renewal
  invoice billed (`max(floor, licences at renewal)` plus whole-period charges and Stripe's
  corrections from the period start), what was invoiced at once (more than 30 days left),
  what waits for the next invoice; a renewal that found nothing pending bills the number
  on its own invoice;
- refused charges: each charge the model was told Stripe refused shows as a dead letter
  (`dead` of the sync status) with its amount; changes of its seat type after it wait
  (pending, "held behind") with theirs, and nothing else is pending;
- quantity: Stripe's quantity never exceeds what the period was paid for; with nothing
  refused or held it is `max(floor, licences at renewal)` (what the renewal bills);
- seat changes: the API accepts or refuses as the rules say (409 with the rules' words)
  and answers with the model's licences, billed quantity, exact charge and 30-day
  decision, the same answer again for a repeated Idempotency-Key; a quote before a
  purchase names the same charge; the plan view shows the model's counts.

`HYPOTHESIS_PROFILE=long` runs the hunt (see tests/model/conftest.py); bugs it found are
in tests/model/test_found_regressions.py. None is open: a new finding goes there as a
strict xfail, and, while it is open, the machine steers around it so the hunt looks on.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sync.renewals import process_renewals
from tests import stripe_setup
from tests.model.conftest import model_settings
from tests.model.harness import CrashAfterStripe, CrashBeforeStripe, World, WorldFactory
from tests.model.reference import (
    BILLED,
    DAY,
    DEAD,
    HELD,
    NOW,
    ROUNDING_PER_CHARGE,
    Charge,
    Outcome,
    Refusal,
    SeatTypeModel,
    SubscriptionModel,
    Terms,
)

JAN_1_2026 = 1_767_225_600
HOUR = 3600
SETTLE_STEP = 15 * 60
SETTLE_ROUNDS = 100  # 25 hours of backoff at most
HOLDERS = ("h0", "h1", "h2", "h3", "h4")
TIMEZONES = ("UTC", "UTC", "America/New_York", "Asia/Kolkata", "Pacific/Auckland")
UNITS = (36500, 12000, 1000, 999, 4999, 3100)
BEHAVIOR = {NOW: "always_invoice", "next": "create_prorations"}
CHARGING = ("always_invoice", "create_prorations")
FAULTS = (
    "500",
    "429",
    "timeout",
    "timeout_after",
    "get_500",
    "crash_after",
    "crash_before",
    "400",
    "worker_down",
    "client_retry",
    "card_declined",
)


@dataclass(frozen=True)
class SeatConfig:
    name: str
    policy: str
    floor: int
    licences: int
    unit: int


@dataclass(frozen=True)
class Config:
    billing_mode: str
    interval: str
    start: int
    seat_types: tuple[SeatConfig, ...]
    terms: Terms = field(default_factory=Terms)


@st.composite
def configs(draw: st.DrawFn) -> Config:
    seats = []
    for name in ("users", "numbers")[: draw(st.integers(1, 2))]:
        seats.append(
            SeatConfig(
                name=name,
                policy=draw(st.sampled_from(["manual", "auto"])),
                floor=draw(st.integers(0, 4)),
                licences=draw(st.integers(0, 6)),
                unit=draw(st.sampled_from(UNITS)),
            )
        )
    return Config(
        billing_mode=draw(st.sampled_from(["flexible", "classic"])),
        interval=draw(st.sampled_from(["year", "month"])),
        start=JAN_1_2026 + draw(st.integers(0, 365 * DAY - 1)),
        seat_types=tuple(seats),
        terms=Terms(
            threshold_days=draw(st.sampled_from([30, 30, 0, 45])),
            granularity=draw(st.sampled_from(["day", "day", "second"])),
            timezone=draw(st.sampled_from(TIMEZONES)),
        ),
    )


faults = st.one_of(st.just("none"), st.sampled_from(FAULTS))
clock_steps = st.one_of(
    st.tuples(st.just("hours"), st.integers(1, 72)),
    st.tuples(st.just("days"), st.integers(1, 20)),
    st.tuples(st.just("weeks"), st.integers(1, 8)),
    st.tuples(st.just("hours_before_end"), st.integers(1, 36)),
    st.tuples(st.just("hours_around_30_days_before_end"), st.integers(-3, 3)),
    st.tuples(st.just("hours_after_end"), st.integers(0, 48)),
)


def timestamp(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def held(record: dict[str, Any]) -> bool:
    return "held behind" in (record.get("last_error") or "")


def close(actual: int, expected: int, charges: int) -> bool:
    return abs(actual - expected) <= ROUNDING_PER_CHARGE * charges


class BillingMachine(RuleBasedStateMachine):
    worlds: ClassVar[WorldFactory]

    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        self.model: SubscriptionModel | None = None
        self.sub_id = ""
        self.stripe_sub = ""
        self.billing_mode = ""
        self.prices: dict[str, str] = {}
        self.seat_type_names: dict[int, str] = {}
        self.unsynced_period_ends: set[int] = set()  # renewals that found changes unsent
        self.adopted_dead_letters: set[int] = set()  # outbox ids: each stands for one charge
        self.idle_renewals: set[int] = set()  # renewals that found nothing pending
        # (renewal, seat type) where the ended period had a refused or held charge when it
        # ended (a later write-off or retry does not make that renewal idle after the fact)
        self.refused_at_renewal: set[tuple[int, str]] = set()
        self.sync_view: dict[str, Any] = {}  # the subscription's sync view, once settled
        self.dirty = False  # something happened since the invariants were last checked
        self.unsynced = False  # changes wait for a worker that is down
        self.renewals_while_unsynced = 0

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    @property
    def m(self) -> SubscriptionModel:
        assert self.model is not None
        return self.model

    # --- set-up -----------------------------------------------------------------------------

    @initialize(config=configs())
    def register(self, config: Config) -> None:
        self.world = type(self).worlds(config.start)
        w = self.w
        quantities = []
        for seat in config.seat_types:
            self.prices[seat.name] = stripe_setup.price(w.stripe, seat.unit, config.interval)
            quantities.append((self.prices[seat.name], max(seat.floor, seat.licences)))
        stripe_sub = stripe_setup.subscription(w.stripe, quantities, config.billing_mode)
        self.stripe_sub = str(stripe_sub.id)
        self.billing_mode = config.billing_mode
        status, body = w.call(
            "POST",
            "/v1/subscriptions",
            {
                "stripe_subscription_id": self.stripe_sub,
                "seat_types": [
                    {
                        "name": s.name,
                        "stripe_price_id": self.prices[s.name],
                        "policy": s.policy,
                        "floor": s.floor,
                        "licences": s.licences,
                    }
                    for s in config.seat_types
                ],
                "invoice_now_threshold_days": config.terms.threshold_days,
                "proration_granularity": config.terms.granularity,
                "billing_timezone": config.terms.timezone,
            },
        )
        assert status == 201, body
        self.sub_id = body["id"]
        self.seat_type_names = w.seat_type_ids()
        self.model = SubscriptionModel(
            anchor=w.double.now,
            interval=config.interval,
            # Registration: what Stripe billed the period is paid (the peak); an `auto`
            # seat type starts with no licences: they follow the holders assigned next.
            seat_types=[
                SeatTypeModel(
                    s.name,
                    s.policy,
                    s.floor,
                    s.unit,
                    licences=0 if s.policy == "auto" else s.licences,
                    peak=max(s.floor, s.licences),
                )
                for s in config.seat_types
            ],
            now=w.double.now,
            terms=config.terms,
        )
        item = w.double.state.books.items[stripe_sub["items"].data[0].id]
        assert (item.period_start, item.period_end) == (self.m.period.start, self.m.period.end)
        self.settle()

    def teardown(self) -> None:
        if self.world is not None:
            self.world.close()

    # --- time and the sync ------------------------------------------------------------------

    def outbox(self) -> list[dict[str, Any]]:
        status, view = self.w.call("GET", f"/v1/ops/subscriptions/{self.sub_id}/sync")
        assert status == 200, view
        return list(view["outbox"])

    def advance_to(self, target: int, worker_down: bool = False) -> None:
        """Move Stripe's clock and the model's; note whether a renewal found the sync idle.
        With the worker down, a renewal after one it missed renews whatever Stripe held then
        (the missed one is corrected only when the worker is back): not idle."""
        pending: list[dict[str, Any]] = []
        if target >= self.m.period.end:
            pending = [r for r in self.outbox() if r["status"] == "pending"]
            if any(not held(r) for r in pending):
                self.unsynced_period_ends.add(self.m.period.end)
        self.w.double.advance_to(target)
        for index, ended in enumerate(self.m.advance_to(target)):
            self.refused_at_renewal |= {
                (ended.end, c.seat_type)
                for c in self.m.charges
                if c.period_end == ended.end and c.status in (DEAD, HELD)
            }
            missed_one = worker_down and (self.renewals_while_unsynced > 0 or index > 0)
            if not pending and not missed_one:
                self.idle_renewals.add(ended.end)

    def settle(self) -> None:
        """Run the worker's jobs until nothing is left to send (changes held behind a dead
        charge wait for ops) and every renewal is checked (its correction may be owed),
        moving the clock past backoffs: a bounded number of rounds."""
        w = self.w
        unsettled: list[dict[str, Any]] = []
        for _ in range(SETTLE_ROUNDS):
            process_renewals(w.sync.sessions, w.sync.port, w.sync.clock)
            w.sync.drain()
            status, view = w.call("GET", f"/v1/ops/subscriptions/{self.sub_id}/sync")
            assert status == 200, view
            unsettled = [r for r in view["outbox"] if r["status"] == "pending" and not held(r)]
            waiting = view["status"]["invoices_deferred"] + view["status"]["renewals_unchecked"]
            if not unsettled and waiting == 0:
                self.sync_view = view
                self.adopt_dead_letters_of_unsynced_renewals()
                self.dirty, self.unsynced, self.renewals_while_unsynced = True, False, 0
                return
            self.advance_to(w.double.now + SETTLE_STEP)
        raise AssertionError(f"the sync did not settle in {SETTLE_ROUNDS} rounds: {unsettled}")

    def dead_records(self) -> list[dict[str, Any]]:
        status, body = self.w.call("GET", "/v1/ops/sync")
        assert status == 200, body
        return [r for r in body["dead"] if r["subscription_id"] == self.sub_id]

    def adopt_dead_letters_of_unsynced_renewals(self) -> None:
        """A charge still on its way when its period ended can no longer be prorated: the
        rules want it visible to ops with its amount. Where that happened, the model takes
        the dead letters the connector shows for it (their amounts are checked)."""
        if not self.unsynced_period_ends:
            return
        names = self.seat_type_names
        for record in self.dead_records():
            if record["id"] in self.adopted_dead_letters:
                continue  # adopted at an earlier settle: its charge is dead already
            at = timestamp(record["changed_at"])
            # One charge per dead letter: several changes may share a second; the nearest
            # amount first (changes of one second and seat type in one period cost the same
            # per seat).
            candidates = sorted(
                (
                    charge
                    for charge in self.m.charges
                    if charge.status == BILLED
                    and charge.period_end in self.unsynced_period_ends
                    and charge.at == at
                    and charge.seat_type == names[record["seat_type_id"]]
                ),
                key=lambda charge: abs(charge.stripe_amount - record["charge_amount"]),
            )
            if candidates:
                self.m.refuse(candidates[0])
                self.adopted_dead_letters.add(record["id"])

    # --- seat changes -----------------------------------------------------------------------

    def manual_seats(self) -> list[str]:
        if self.model is None:
            return []
        return [n for n, s in self.m.seats.items() if s.policy == "manual"]

    def seat_change(
        self,
        model_op: Callable[[], Outcome],
        method: str,
        path: str,
        body: dict[str, Any] | None,
        fault: str,
        *,
        key: bool = False,
    ) -> None:
        idempotency_key: bool | str = key
        if fault == "client_retry":  # the caller sends it twice: it must change things once
            idempotency_key = f"model-retry-{uuid.uuid4()}"
        try:
            outcome = model_op()
        except Refusal as refusal:
            status, payload = self.call_maybe_twice(method, path, body, idempotency_key)
            assert status == 409, (status, payload)
            assert refusal.phrase in payload["error"]["message"], payload
            return
        status, payload = self.call_maybe_twice(method, path, body, idempotency_key)
        assert status == 200, (status, payload)
        assert (payload["licences"], payload["billed_quantity"]) == (
            outcome.licences,
            outcome.billed_after,
        ), (payload, outcome)
        charge = outcome.charge
        if charge is None:
            assert payload["expected_charge"]["amount"] == 0, payload
            assert payload["proration_behavior"] not in CHARGING, payload
        else:
            assert close(payload["expected_charge"]["amount"], charge.stripe_amount, 0), (
                payload,
                charge,
                charge.stripe_amount,
            )
            assert payload["proration_behavior"] == BEHAVIOR[charge.timing], (payload, charge)
        self.push(fault, charge)

    def call_maybe_twice(
        self, method: str, path: str, body: dict[str, Any] | None, key: bool | str
    ) -> tuple[int, dict[str, Any]]:
        first = self.w.call(method, path, body, key=key)
        if isinstance(key, str):
            again = self.w.call(method, path, body, key=key)
            assert again == first, f"the same request and key answered {again}, then {first}"
        return first

    def push(self, fault: str, charge: Charge | None) -> None:
        """Arm `fault` for the sync of this change, then settle."""
        w = self.w
        path = rf"/v1/subscriptions/{self.stripe_sub}"
        if fault == "worker_down":  # no sync now: changes pile up until a later step settles
            self.unsynced = True
            return
        if fault == "400":
            # Only when this change is the one thing to send (the 400 hits the first write).
            if charge is not None and charge.status == BILLED and not self.unsynced:
                self.m.refuse(charge)
                w.double.inject_fault(
                    "POST", path, status=400, error_code="parameter_invalid_integer"
                )
        elif fault == "500":
            w.double.inject_fault("POST", path, status=500)
        elif fault == "429":
            w.double.inject_fault("POST", path, status=429, error_code="lock_timeout")
        elif fault == "timeout":
            w.double.inject_fault("POST", path, kind="timeout")
        elif fault == "timeout_after":
            w.double.inject_fault("POST", path, kind="timeout", apply_first=True)
        elif fault == "get_500":
            w.double.inject_fault("GET", path, status=500)
        elif fault == "card_declined":  # the change applies; the invoice stays open
            w.double.fail_next_payments(1)
        elif fault in ("crash_after", "crash_before"):
            self.crash_a_worker(after_the_write=fault == "crash_after")
        self.settle()
        w.double.faults.clear()

    def crash_a_worker(self, *, after_the_write: bool) -> None:
        doomed = self.w.make_drain("doomed-worker")
        update = doomed.port.update_quantity

        def update_then_die(request: Any) -> Any:
            if not after_the_write:
                raise CrashBeforeStripe
            update(request)
            raise CrashAfterStripe

        doomed.port.update_quantity = update_then_die  # type: ignore[method-assign,assignment]
        with contextlib.suppress(CrashAfterStripe, CrashBeforeStripe):
            doomed.drain()

    def seats_path(self, name: str) -> str:
        return f"/v1/subscriptions/{self.sub_id}/seats/{name}"

    # --- steps: each one a seat change, a clock move or an ops action, then a settled sync.
    # The rules below draw their arguments; tests/model/test_found_regressions.py calls the
    # steps with explicit ones.

    def do_buy(self, name: str, quantity: int, fault: str = "none") -> None:
        self.check_quote(name, quantity)
        self.seat_change(
            lambda: self.m.buy(name, quantity),
            "POST",
            f"{self.seats_path(name)}/licenses",
            {"quantity": quantity},
            fault,
            key=True,
        )

    def check_quote(self, name: str, quantity: int) -> None:
        what_if = copy.deepcopy(self.m).buy(name, quantity)
        status, quote = self.w.call(
            "POST", f"{self.seats_path(name)}/quote", {"quantity": quantity}
        )
        assert status == 200, quote
        assert quote["billed_quantity_after"] == what_if.billed_after, (quote, what_if)
        charge = what_if.charge
        if charge is None:
            assert (quote["charge"]["amount"], quote["invoiced"]) == (0, "nothing_to_charge")
        else:
            assert close(quote["charge"]["amount"], charge.stripe_amount, 0), (quote, charge)
            invoiced = "now" if charge.timing == NOW else "next_invoice"
            assert quote["invoiced"] == invoiced, (quote, charge)

    def do_release(self, name: str, quantity: int, fault: str = "none") -> None:
        self.seat_change(
            lambda: self.m.release(name, quantity),
            "POST",
            f"{self.seats_path(name)}/licenses/release",
            {"quantity": quantity},
            fault,
        )

    def do_assign(self, name: str, holder: str, active: bool, fault: str = "none") -> None:
        self.seat_change(
            lambda: self.m.assign(name, holder, active),
            "PUT",
            f"{self.seats_path(name)}/holders/{holder}",
            {"state": "active" if active else "inactive"},
            fault,
        )

    def do_set_active(self, name: str, holder: str, active: bool, fault: str = "none") -> None:
        self.seat_change(
            lambda: self.m.set_active(name, holder, active),
            "PATCH",
            f"{self.seats_path(name)}/holders/{holder}",
            {"state": "active" if active else "inactive"},
            fault,
        )

    def do_unassign(self, name: str, holder: str, fault: str = "none") -> None:
        self.seat_change(
            lambda: self.m.unassign(name, holder),
            "DELETE",
            f"{self.seats_path(name)}/holders/{holder}",
            None,
            fault,
        )

    def do_move_clock(self, kind: str, n: int, worker_down: bool = False) -> None:
        now, end = self.w.double.now, self.m.period.end
        target = {
            "hours": now + n * HOUR,
            "days": now + n * DAY,
            "weeks": now + n * 7 * DAY,
            "hours_before_end": end - n * HOUR,
            "hours_around_30_days_before_end": end - self.m.terms.threshold_days * DAY + n * HOUR,
            "hours_after_end": end + n * HOUR,
        }[kind]
        target = max(target, now + 60)
        crossed = len(self.m.advance_preview(target)) if self.unsynced or worker_down else 0
        self.advance_to(target, worker_down=self.unsynced or worker_down)
        self.renewals_while_unsynced += crossed
        if worker_down:
            self.unsynced = True
        else:
            self.settle()

    def do_resync(self) -> None:
        status, body = self.w.call("POST", f"/v1/ops/subscriptions/{self.sub_id}/resync", key=True)
        assert status == 200, body
        self.settle()

    def do_retry(self, charge: Charge) -> None:
        record = self.dead_record_of(charge)
        status, body = self.w.call("POST", f"/v1/ops/outbox/{record['id']}/retry", key=True)
        assert status == 200, body
        self.m.retry(charge)
        self.settle()

    def do_write_off(self, charge: Charge) -> None:
        record = self.dead_record_of(charge)
        status, body = self.w.call(
            "POST",
            f"/v1/ops/outbox/{record['id']}/write-off",
            {"reason": "model: goodwill"},
            key=True,
        )
        assert status == 200, body
        self.m.write_off(charge)
        self.settle()

    def dead_charges(self, current_period_only: bool) -> list[Charge]:
        if self.model is None:
            return []
        return [
            c
            for c in self.m.charges
            if c.status == DEAD and (not current_period_only or c.period_end == self.m.period.end)
        ]

    def dead_record_of(self, charge: Charge) -> dict[str, Any]:
        """The dead letter of a refused charge: same seat type and change time, the amount
        nearest the charge's (several changes may share a second), the oldest first."""
        names = self.seat_type_names
        found = sorted(
            (
                r
                for r in self.dead_records()
                if names[r["seat_type_id"]] == charge.seat_type
                and timestamp(r["changed_at"]) == charge.at
            ),
            key=lambda r: (abs(r["charge_amount"] - charge.stripe_amount), r["id"]),
        )
        assert found, f"no dead letter for the refused {charge}"
        return found[0]

    def unassigned(self) -> list[tuple[str, str]]:
        if self.model is None:
            return []
        return [
            (n, h) for n, s in sorted(self.m.seats.items()) for h in HOLDERS if h not in s.holders
        ]

    def assigned(self) -> list[tuple[str, str]]:
        if self.model is None:
            return []
        return [(n, h) for n, s in sorted(self.m.seats.items()) for h in sorted(s.holders)]

    # --- rules ----------------------------------------------------------------------------------
    # Every rule takes one `data` and draws its arguments (labelled in a reproduction), so
    # that Hypothesis, which favours rules with fewer arguments, picks them evenly. A rule with
    # nothing to act on does nothing.

    @rule(data=st.data())
    def buy(self, data: st.DataObject) -> None:
        if self.manual_seats():
            name = data.draw(st.sampled_from(self.manual_seats()), label="seat type")
            quantity = data.draw(st.integers(1, 4), label="quantity")
            self.do_buy(name, quantity, data.draw(faults, label="fault"))

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if self.manual_seats():
            name = data.draw(st.sampled_from(self.manual_seats()), label="seat type")
            quantity = data.draw(st.integers(1, 3), label="quantity")
            self.do_release(name, quantity, data.draw(faults, label="fault"))

    @rule(data=st.data())
    def assign(self, data: st.DataObject) -> None:
        if self.unassigned():
            name, holder = data.draw(st.sampled_from(self.unassigned()), label="holder")
            active = data.draw(st.booleans(), label="active")
            self.do_assign(name, holder, active, data.draw(faults, label="fault"))

    @rule(data=st.data())
    def toggle_holder_state(self, data: st.DataObject) -> None:
        """Deactivate an active holder, or re-activate an inactive one."""
        if self.assigned():
            name, holder = data.draw(st.sampled_from(self.assigned()), label="holder")
            active = not self.m.seats[name].holders[holder]
            self.do_set_active(name, holder, active, data.draw(faults, label="fault"))

    @rule(data=st.data())
    def unassign(self, data: st.DataObject) -> None:
        if self.assigned():
            name, holder = data.draw(st.sampled_from(self.assigned()), label="holder")
            self.do_unassign(name, holder, data.draw(faults, label="fault"))

    @rule(data=st.data())
    def move_clock(self, data: st.DataObject) -> None:
        kind, n = data.draw(clock_steps, label="clock step")
        worker_down = data.draw(st.sampled_from([False, False, True]), label="worker down")
        self.do_move_clock(kind, n, worker_down)

    @rule(data=st.data())
    def ops(self, data: st.DataObject) -> None:
        """Billing ops: resync the subscription, or retry / write off a dead letter."""
        actions = ["resync"]
        if self.dead_charges(current_period_only=True):
            actions.append("retry")
        if self.dead_charges(current_period_only=False):
            actions.append("write_off")
        action = data.draw(st.sampled_from(actions), label="ops action")
        if action == "resync":
            self.do_resync()
            return
        charge = data.draw(
            st.sampled_from(self.dead_charges(current_period_only=action == "retry")),
            label="dead charge",
        )
        if action == "retry":
            self.do_retry(charge)
        else:
            self.do_write_off(charge)

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def the_rules_hold(self) -> None:
        """Checked after every step that changed something (a refused change or a rule with
        nothing to act on changes nothing)."""
        if self.model is None or not self.dirty:
            return
        self.stripe_holds_what_the_rules_say_is_owed()
        self.stripe_quantity_never_exceeds_what_was_paid()
        self.plan_view_shows_the_model()
        self.dirty = False

    def stripe_holds_what_the_rules_say_is_owed(self) -> None:
        m, w = self.m, self.w
        lines = w.lines(self.stripe_sub)
        names = self.seat_type_names
        dead = self.sync_view["status"]["dead"]  # as GET /v1/ops/sync shows them
        outbox = self.sync_view["outbox"]
        for name, seat in m.seats.items():
            price = self.prices[name]
            for period in m.periods:
                start, end = period.start, period.end
                mine = [ln for ln in lines if ln.price == price and ln.period_end == end]
                whole = [ln for ln in mine if not ln.proration or ln.period_start <= start]
                part = [ln for ln in mine if ln.proration and ln.period_start > start]
                billed = m.charges_of(name, end, BILLED)
                at_start = [c for c in billed if c.from_period_start]
                now = [c for c in billed if not c.from_period_start and c.timing == NOW]
                later = [c for c in billed if not c.from_period_start and c.timing != NOW]
                refused = m.charges_of(name, end, DEAD)
                actual = {
                    "renewal": sum(ln.amount for ln in whole),
                    "now": sum(ln.amount for ln in part if ln.where == "immediate"),
                    "next": sum(ln.amount for ln in part if ln.where in ("pending", "renewal")),
                    "dead": sum(
                        r["charge_amount"]
                        for r in dead
                        if names[r["seat_type_id"]] == name
                        and start <= timestamp(r["changed_at"]) < end
                    ),
                }
                expected = {
                    "renewal": period.base[name] * seat.unit
                    + sum(c.stripe_amount for c in at_start),
                    "now": sum(c.stripe_amount for c in now),
                    "next": sum(c.stripe_amount for c in later),
                    "dead": sum(c.stripe_amount for c in refused),
                }
                counts = {"renewal": 0, "now": len(now), "next": len(later), "dead": len(refused)}
                if (
                    start in self.idle_renewals
                    and (start, name) not in self.refused_at_renewal
                    and not [c for c in m.charges_of(name, start) if c.status in (DEAD, HELD)]
                ):
                    # Nothing was on its way: the renewal invoice itself bills the number.
                    renewal = [ln for ln in whole if ln.where == "renewal" and not ln.proration]
                    assert sum(ln.amount for ln in renewal) == period.base[name] * seat.unit, (
                        f"{name}: the renewal at {iso(start)} billed {renewal}, the rules say "
                        f"max(floor, licences at renewal) = {period.base[name]} seats"
                    )
                for bucket, value in actual.items():
                    assert close(value, expected[bucket], counts[bucket]), (
                        f"{name}, period {iso(start)}..{iso(end)}, {bucket}: Stripe/ops hold "
                        f"{value}, the rules say {expected[bucket]} "
                        f"(all: {actual} vs {expected}); charges: "
                        f"{m.charges_of(name, end)}"
                    )
            held_records = [
                r for r in outbox if r["status"] == "pending" and names[r["seat_type_id"]] == name
            ]
            held_charges = m.charges_of(name, m.period.end, HELD)
            assert close(
                sum(r["charge_amount"] for r in held_records),
                sum(c.stripe_amount for c in held_charges),
                len(held_charges),
            ), (held_records, held_charges)
            if not m.blocked(name):
                assert held_records == [], held_records

    def stripe_quantity_never_exceeds_what_was_paid(self) -> None:
        quantities = self.w.quantities(self.stripe_sub)
        for name, seat in self.m.seats.items():
            quantity = quantities[self.prices[name]]
            paid = self.m.paid_quantity(name)
            assert quantity <= paid, f"{name}: Stripe holds {quantity}, paid for {paid}"
            waiting = self.m.charges_of(name, self.m.period.end, DEAD) + self.m.charges_of(
                name, self.m.period.end, HELD
            )
            if not waiting:
                assert quantity == seat.billed_at_renewal, (
                    f"{name}: Stripe holds {quantity}, the renewal must bill "
                    f"max(floor, licences at renewal) = {seat.billed_at_renewal}"
                )

    def plan_view_shows_the_model(self) -> None:
        status, view = self.w.call("GET", f"/v1/subscriptions/{self.sub_id}")
        assert status == 200, view
        assert timestamp(view["current_period_end"]) == self.m.period.end, view
        for shown in view["seat_types"]:
            seat = self.m.seats[shown["name"]]
            assert {
                "licences": shown["licences"],
                "peak": shown["peak"],
                "billed_quantity_now": shown["billed_quantity_now"],
                "billed_quantity_at_renewal": shown["billed_quantity_at_renewal"],
                "free_licences": shown["free_licences"],
                "active": shown["holders"]["active"],
                "inactive": shown["holders"]["inactive"],
            } == {
                "licences": seat.licences,
                "peak": seat.peak,
                "billed_quantity_now": seat.billed,
                "billed_quantity_at_renewal": seat.billed_at_renewal,
                "free_licences": seat.free,
                "active": seat.in_use,
                "inactive": len(seat.holders) - seat.in_use,
            }, shown
        # The count kept on the seat type row (what decisions read) is the holders' count.
        for name, kept, counted in self.w.in_use_kept_and_counted():
            assert kept == counted == self.m.seats[name].in_use, (name, kept, counted)


def run_model(worlds: WorldFactory) -> None:
    machine = type("BillingModel", (BillingMachine,), {"worlds": worlds})
    run_state_machine_as_test(machine, settings=model_settings())


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_the_connector_bills_what_the_rules_say(worlds: WorldFactory) -> None:
    try:
        run_model(worlds)
    finally:
        print(f"billing model: {worlds.built} examples run", file=sys.stderr)
