"""Benchmark: the periodic reconcile over N subscriptions (issue 10: "Reconcile at scale").

Set-up, without N API calls: the Stripe double's subscriptions are seeded in its state
(`StripeDouble.seed_subscriptions`: one customer and one yearly item each), the connector's
accounts, subscriptions and seat types bulk-inserted to match (same item ids, quantities,
period, price). A few items then drift in Stripe (their quantity raised by one). Then
`sync.reconcile.reconcile` runs once, timed, and once more under tracemalloc (the same work:
the drift is found again), and the benchmark prints the list calls it made against
ceil(N/100), its memory, its wall time, and whether the drift found is exactly the drift made.

By default the double runs in a child process, served over HTTP by the sandbox's app, so this
process's memory (ru_maxrss) is the connector's alone; `--in-process` serves it here through
`responses` instead (then RSS includes the double, and tracemalloc the double's work for
each page). Wall time includes the double's own (about half of it over HTTP: each page is
pretty-printed JSON through werkzeug); "CPU here" is this process's alone.

Run:  .venv/bin/python bench/reconcile_scale.py [--subscriptions 100000] [--drift 5]
      [--sqlite | --database postgresql://postgres@127.0.0.1:5432/test] [--in-process]
SQLite: a fresh file in a temporary directory. PostgreSQL: a throw-away schema, dropped after.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: see bench/common.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import requests
import responses
import stripe
from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import make_url

from bench.common import throwaway_schema
from connector.adapters.database import make_engine, make_session_factory
from connector.adapters.migrate import upgrade
from connector.adapters.models import Account, Drift, SeatType, Subscription
from connector.adapters.stripe_port import StripeClientPort
from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install
from sync.reconcile import ReconcileReport, reconcile

NOW = int(datetime(2026, 3, 15, 10, 30, tzinfo=UTC).timestamp())
API_KEY = "sk_test_bench"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
IN_PROCESS_API = "https://api.stripe.bench"
UNIT_AMOUNT = 36500
CHUNK = 5000  # rows a bulk insert (and a message from the child)


@dataclass(frozen=True)
class Catalogue:
    """What every seeded subscription shares: its price and its period."""

    price: str
    period_start: int
    period_end: int


Row = tuple[str, str, str, int]  # customer, subscription, item, quantity (before the drift)


def seed_double(n: int, drifted: list[int]) -> tuple[StripeDouble, Catalogue, list[Row]]:
    """N subscriptions in a fresh double, then the `drifted` ones' quantities raised by one
    in Stripe (as if someone changed them in the Dashboard, without proration); the rows
    keep the quantities the connector was told."""
    double = StripeDouble(now=NOW)
    product = double.state.create_product("Seat", {})
    price = double.state.create_price(
        product=product.id,
        currency="usd",
        unit_amount=UNIT_AMOUNT,
        interval="year",
        interval_count=1,
        metadata={},
        nickname=None,
        lookup_key=None,
    )
    seeded = double.seed_subscriptions(price.id, [5 + i % 20 for i in range(n)])
    items = double.state.books.items
    rows = [(s.customer, s.id, s.items[0], items[s.items[0]].quantity) for s in seeded]
    first = items[seeded[0].items[0]] if seeded else None
    catalogue = Catalogue(
        price.id,
        NOW if first is None else first.period_start,
        NOW if first is None else first.period_end,
    )
    for index in drifted:
        items[rows[index][2]].quantity += 1
    return double, catalogue, rows


def warm_up(double: StripeDouble) -> None:
    """One list call before the measured ones: the double orders its subscriptions once."""
    double.request("GET", "/v1/subscriptions", query="limit=1", headers=AUTH)


def our_id(kind: str, index: int) -> str:
    return f"{kind}_bench{index:010d}"


def insert_ours(engine: Engine, catalogue: Catalogue, start: int, rows: list[Row]) -> None:
    """The connector's rows for `rows` (the `start`-th subscription first), as registration
    would have left them: licences = quantity = what Stripe bills, nothing pending."""
    now = datetime.fromtimestamp(NOW, UTC)
    period_start = datetime.fromtimestamp(catalogue.period_start, UTC)
    period_end = datetime.fromtimestamp(catalogue.period_end, UTC)
    accounts, subscriptions, seat_types = [], [], []
    for index, (customer, stripe_sub, item, quantity) in enumerate(rows, start):
        account, subscription = our_id("acc", index), our_id("ssub", index)
        accounts.append({"id": account, "stripe_customer_id": customer, "created_at": now})
        subscriptions.append(
            {
                "id": subscription,
                "account_id": account,
                "stripe_subscription_id": stripe_sub,
                "currency": "usd",
                "billing_mode": "flexible",
                "status": "active",
                "billing_cycle_anchor": period_start,
                "current_period_start": period_start,
                "current_period_end": period_end,
                "invoice_now_threshold_days": 30,
                "proration_granularity": "day",
                "billing_timezone": "UTC",
                "created_at": now,
            }
        )
        seat_types.append(
            {
                "subscription_id": subscription,
                "name": "users",
                "stripe_subscription_item_id": item,
                "stripe_price_id": catalogue.price,
                "unit_amount": UNIT_AMOUNT,
                "interval": "year",
                "interval_count": 1,
                "policy": "manual",
                "floor": 5,
                "extra_seats_allowed": False,
                "membership_required": False,
                "licences": quantity,
                "peak": quantity,
                "stripe_quantity": quantity,
                "stripe_seen_at": now,
                "paid_quantity": quantity,
                "paid_period_start": period_start,
                "opening_billed": quantity,
                "billed_per": "user",
                "peak_assigned": 0,
                "true_up_months": 12,
                "over_allocation_alerted": False,
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(Account), accounts)
        connection.execute(insert(Subscription), subscriptions)
        connection.execute(insert(SeatType), seat_types)


# --- the double: in a child process over HTTP, or here through `responses` ----------------


@dataclass
class Served:
    """A double: its rows (in chunks, each inserted before the next is asked for), then —
    asked once they are all in — where it answers, and how many list calls it has had."""

    catalogue: Catalogue
    rows: Iterator[list[Row]]
    api_base: Callable[[], str]
    list_calls: Callable[[], int]


def _child(conn: Connection, n: int, drifted: list[int]) -> None:
    """Seed the double, send the rows to the parent in chunks, drift, then serve it."""
    import logging

    import flask
    from werkzeug.serving import make_server

    from stripe_sandbox.server import create_sandbox_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    double, catalogue, rows = seed_double(n, drifted)
    warm_up(double)
    conn.send(catalogue)
    for start in range(0, len(rows), CHUNK):
        conn.send(rows[start : start + CHUNK])
    conn.send(None)
    del rows
    app = create_sandbox_app(double, None)

    @app.get("/_bench/list_calls")
    def list_calls() -> flask.Response:
        return flask.jsonify(count=len(double.requests_to("GET", "/v1/subscriptions")))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    conn.send(server.server_port)
    server.serve_forever()


@contextmanager
def served_in_child(n: int, drifted: list[int]) -> Iterator[Served]:
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    process = context.Process(target=_child, args=(theirs, n, drifted), daemon=True)
    process.start()
    try:
        catalogue: Catalogue = ours.recv()
        base: list[str] = []

        def chunks() -> Iterator[list[Row]]:
            while (chunk := ours.recv()) is not None:
                yield chunk

        def api_base() -> str:
            if not base:
                base.append(f"http://127.0.0.1:{ours.recv()}")
            return base[0]

        def list_calls() -> int:
            answer = requests.get(f"{api_base()}/_bench/list_calls", timeout=60)
            return int(answer.json()["count"])

        yield Served(catalogue, chunks(), api_base, list_calls)
    finally:
        process.terminate()
        process.join(timeout=30)


@contextmanager
def served_in_process(n: int, drifted: list[int]) -> Iterator[Served]:
    double, catalogue, rows = seed_double(n, drifted)
    warm_up(double)

    def forget_calls(response: Any) -> Any:
        """`responses` keeps every response it served (a page is about 300 KB of JSON):
        keep none, or the reconcile's memory would be theirs."""
        rsps.calls.reset()
        for registered in rsps.registered():
            registered.calls.reset()
        return response

    with responses.RequestsMock(
        assert_all_requests_are_fired=False, response_callback=forget_calls
    ) as rsps:
        install(rsps, double, IN_PROCESS_API)
        yield Served(
            catalogue,
            (rows[start : start + CHUNK] for start in range(0, len(rows), CHUNK)),
            lambda: IN_PROCESS_API,
            lambda: len(double.requests_to("GET", "/v1/subscriptions")),
        )


# --- measuring ------------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class Run:
    report: ReconcileReport
    list_calls: int
    seconds: float
    cpu_seconds: float  # this process's (the connector's, when the double is in a child)
    rss_before_mib: float
    max_rss_before_mib: float
    max_rss_after_mib: float
    traced_peak_mib: float | None  # tracemalloc's peak, when traced


@dataclass
class Result:
    subscriptions: int
    drifted: set[str]  # our subscription ids made to drift
    drift_open: set[tuple[str, str]]  # (subscription id, field) of the open drift after a run
    runs: list[Run]

    @property
    def expected_list_calls(self) -> int:
        return max(1, math.ceil(self.subscriptions / 100))

    @property
    def drift_exact(self) -> bool:
        return self.drift_open == {(s, "quantity") for s in self.drifted} and all(
            run.report.drift_found == len(self.drifted) for run in self.runs
        )


def run_benchmark(
    url: str, n: int, drift: int, *, in_process: bool, traced_run: bool = True
) -> Result:
    """Seed, insert, reconcile (once timed; once more under tracemalloc if `traced_run`)."""
    engine = make_engine(url)
    upgrade(engine)
    drifted = sorted(random.Random(10).sample(range(n), min(drift, n)))
    serve = served_in_process if in_process else served_in_child
    with serve(n, drifted) as served:
        start = 0
        for chunk in served.rows:
            insert_ours(engine, served.catalogue, start, chunk)
            start += len(chunk)
        client = stripe.StripeClient(
            API_KEY,
            http_client=stripe.RequestsClient(timeout=120),
            base_addresses={"api": served.api_base()},
            max_network_retries=0,
        )
        port = StripeClientPort(client)
        sessions = make_session_factory(engine)
        runs = []
        for hours, traced in enumerate([False, True] if traced_run else [False], 1):
            # An hour after the set-up, then two: each run sees every seat type anew.
            at = datetime.fromtimestamp(NOW + 3600 * hours, UTC)
            calls_before = served.list_calls()
            rss_before, max_before = rss_mib(), max_rss_mib()
            if traced:
                tracemalloc.start()
            started, cpu = time.perf_counter(), time.process_time()
            report = reconcile(sessions, port, lambda: at, repair=False)  # noqa: B023
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            peak = None
            if traced:
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
            runs.append(
                Run(
                    report,
                    served.list_calls() - calls_before,
                    seconds,
                    cpu,
                    rss_before,
                    max_before,
                    max_rss_mib(),
                    peak,
                )
            )
    with make_session_factory(engine)() as session:
        drift_open = {
            (subscription_id, name)
            for subscription_id, name in session.execute(
                select(Drift.subscription_id, Drift.field).where(Drift.resolved_at.is_(None))
            )
        }
    engine.dispose()
    return Result(n, {our_id("ssub", i) for i in drifted}, drift_open, runs)


@contextmanager
def fresh_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{directory}/reconcile.db"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--drift", type=int, default=5, help="subscriptions made to drift")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database", help="PostgreSQL URL: a throw-away schema in it")
    where.add_argument("--sqlite", action="store_true", help="a fresh SQLite file (default)")
    parser.add_argument(
        "--in-process", action="store_true", help="serve the double here, through responses"
    )
    args = parser.parse_args()
    database: AbstractContextManager[str] = (
        throwaway_schema(args.database) if args.database else fresh_sqlite()
    )
    set_up = time.perf_counter()
    with database as url:
        result = run_benchmark(url, args.subscriptions, args.drift, in_process=args.in_process)
    whole = time.perf_counter() - set_up
    expected = result.expected_list_calls
    print(
        f"database: {make_url(url).get_backend_name()}; double "
        f"{'in process (responses)' if args.in_process else 'in a child process (HTTP)'}; "
        f"N = {result.subscriptions:,} subscriptions, {len(result.drifted)} made to drift"
    )
    for name, run in zip(["timed", "traced"], result.runs, strict=True):
        print(
            f"{name} run: {run.list_calls:,} list calls for ceil(N/100) = {expected:,} "
            f"(ratio {run.list_calls / expected:.3f}); {run.seconds:.1f} s wall "
            f"({run.cpu_seconds:.1f} s CPU here), {result.subscriptions / run.seconds:,.0f} "
            f"subscriptions/s; report {run.report}"
        )
        print(
            f"    memory: RSS before {run.rss_before_mib:.0f} MiB, ru_maxrss "
            f"{run.max_rss_before_mib:.0f} -> {run.max_rss_after_mib:.0f} MiB "
            f"(delta {run.max_rss_after_mib - run.max_rss_before_mib:.0f} MiB)"
            + (
                ""
                if run.traced_peak_mib is None
                else f"; tracemalloc peak during the reconcile {run.traced_peak_mib:.1f} MiB"
            )
        )
    print(
        f"drift found exactly for the {len(result.drifted)} drifted: {result.drift_exact} "
        f"(open drift: {sorted(result.drift_open)[:10]})"
    )
    print(f"targets: list calls within 5% of {expected:,}, peak memory under 300 MB")
    print(f"whole benchmark (set-up included): {whole:.0f} s")


if __name__ == "__main__":
    main()
