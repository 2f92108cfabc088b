"""Benchmark: a burst of seat changes over many subscriptions, through the seat API, the
outbox and the sync, into the Stripe double (in process, through `responses`).

Measures how many Stripe calls the burst costs, how long the API takes per change, and
how long one drain needs to bring everything to Stripe, and the lag of single changes
with the scheduler running. Run:  .venv/bin/python bench/sync_burst.py [--database URL]
[--subscriptions 50] [--changes 1000] [--days 1] [--lag-samples 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: see bench/common.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import responses
import stripe
from sqlalchemy import func, select

from connector.adapters.database import make_engine, make_session_factory
from connector.adapters.migrate import upgrade
from connector.adapters.models import OutboxRecord
from connector.adapters.stripe_port import StripeClientPort
from connector.app import create_app
from connector.config import Settings, StripeSettings, SyncSettings
from connector.services.apikeys import Scope, create_key
from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install
from sync.drain import OutboxDrain
from sync.worker import Jobs, start_background

API = "https://api.stripe.bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--subscriptions", type=int, default=50)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1, help="spread the changes over N days")
    parser.add_argument(
        "--lag-samples", type=int, default=10, help="0: the burst alone, no lag measured"
    )
    args = parser.parse_args()
    url = args.database or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    engine = make_engine(url)
    upgrade(engine)
    double = StripeDouble(now=int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()))
    rng = random.Random(7)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        install(rsps, double, API)
        client = stripe.StripeClient(
            "sk_test_bench", http_client=stripe.RequestsClient(), base_addresses={"api": API}
        )
        clock = lambda: datetime.fromtimestamp(double.now, UTC)  # noqa: E731
        settings = Settings(database_url=url, stripe=StripeSettings(api_base=API))
        app = create_app(
            settings,
            engine=engine,
            stripe_port=StripeClientPort(client),
            clock=clock,
            run_jobs=False,
        )
        web = app.test_client()
        with make_session_factory(engine).begin() as session:
            key = create_key(session, "bench", list(Scope), clock()).secret
        auth = {"Authorization": f"Bearer {key}"}
        price = client.v1.prices.create(
            {
                "currency": "usd",
                "unit_amount": 36500,
                "recurring": {"interval": "year"},
                "product_data": {"name": "Seat"},
            }
        ).id
        subs = []
        for _ in range(args.subscriptions):
            customer = client.v1.customers.create({"name": "bench"}).id
            stripe_sub = client.v1.subscriptions.create(
                {"customer": customer, "items": [{"price": price, "quantity": 10}]}
            )
            registered = web.post(
                "/v1/subscriptions",
                json={
                    "stripe_subscription_id": stripe_sub.id,
                    "seat_types": [{"name": "users", "stripe_price_id": price, "floor": 5}],
                },
                headers=auth,
            )
            subs.append(registered.json["id"])  # type: ignore[index]
        before = len(double.requests)
        double.advance_to(int(datetime(2026, 3, 15, 9, tzinfo=UTC).timestamp()))
        latencies, actions = [], Counter[str]()
        for n in range(args.changes):
            if args.days > 1 and n and n % (args.changes // args.days) == 0:
                double.advance(86400)
            sub = rng.choice(subs)
            action = rng.choices(["buy", "release"], weights=[3, 1])[0]
            path = "licenses" if action == "buy" else "licenses/release"
            started = time.perf_counter()
            response = web.post(
                f"/v1/subscriptions/{sub}/seats/users/{path}",
                json={"quantity": 1},
                headers={**auth, "Idempotency-Key": f"bench-{uuid.uuid4()}"},
            )
            latencies.append(time.perf_counter() - started)
            actions[f"{action} {response.status_code}"] += 1
        sync = OutboxDrain(
            make_session_factory(engine),
            StripeClientPort(client),
            clock,
            SyncSettings(max_requests_per_second=10_000),
            "bench",
        )
        started = time.perf_counter()
        report = sync.drain()
        drain_seconds = time.perf_counter() - started
        calls = Counter(f"{r.method} {r.path.split('/')[2]}" for r in double.requests[before:])
        writes = sum(1 for r in double.requests[before:] if r.method == "POST")
        invoices = sum(
            1
            for r in double.requests[before:]
            if r.method == "POST" and r.params.get("proration_behavior") == "always_invoice"
        )
        lags = measure_lag(
            engine, client, clock, web, auth, subs, rng, double, samples=args.lag_samples
        )
    accepted = sum(v for k, v in actions.items() if k.endswith("200"))
    print(
        f"database: {make_engine(url).dialect.name}; {args.subscriptions} subscriptions, "
        f"{args.changes} changes over {args.days} day(s): {dict(actions)}"
    )
    print(
        f"API: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p95 {sorted(latencies)[int(len(latencies) * 0.95)] * 1000:.1f} ms per change"
    )
    print(f"Stripe calls for the burst: {dict(calls)}")
    print(
        f"Stripe writes: {writes} for {accepted} accepted changes "
        f"= {writes / max(accepted, 1):.3f} per change; invoices created: {invoices}"
    )
    print(
        f"one drain: {drain_seconds:.2f} s for {report.records_done} outbox records "
        f"({report.subscriptions} subscriptions)"
    )
    if lags:  # none with --lag-samples 0
        print(
            f"sync lag of one change, scheduler running (drain every 2 s), {len(lags)} "
            f"samples: median {statistics.median(lags):.2f} s, max {max(lags):.2f} s"
        )


def measure_lag(
    engine: Any,
    client: stripe.StripeClient,
    clock: Any,
    web: Any,
    auth: dict[str, str],
    subs: list[str],
    rng: random.Random,
    double: StripeDouble,
    samples: int = 10,
) -> list[float]:
    """Seconds from a change's 2xx to its outbox record being done, the jobs running."""
    lock = threading.Lock()
    request = double.request

    def serialized(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return request(*args, **kwargs)

    double.request = serialized  # type: ignore[method-assign]
    sessions = make_session_factory(engine)
    jobs = Jobs.build(sessions, StripeClientPort(client), clock, SyncSettings(), "bench-lag")
    scheduler = start_background(jobs)
    lags = []
    try:
        for _ in range(samples):
            time.sleep(rng.uniform(0, 2))
            sub = rng.choice(subs)
            started = time.perf_counter()
            web.post(
                f"/v1/subscriptions/{sub}/seats/users/licenses",
                json={"quantity": 1},
                headers={**auth, "Idempotency-Key": f"bench-{uuid.uuid4()}"},
            )
            while True:
                with sessions() as session:
                    pending = session.scalar(
                        select(func.count())
                        .select_from(OutboxRecord)
                        .where(OutboxRecord.status == "pending")
                    )
                if not pending:
                    break
                time.sleep(0.01)
            lags.append(time.perf_counter() - started)
    finally:
        scheduler.shutdown(wait=True)
    return lags


if __name__ == "__main__":
    main()
