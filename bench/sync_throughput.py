"""Benchmark: how busy one sync worker keeps Stripe's account rate when Stripe is slow.

N registered subscriptions each buy one licence at once (through the connector's API);
a Stripe sandbox server answers every API request after `--latency-ms` (Stripe's usual
write time is about 300 ms); ONE worker (`OutboxDrain`) with the account rate set to
`--rate` requests a second drains them. Printed: Stripe requests a second while draining,
next to the allowed rate (the reference of the same run), and subscriptions a second.

Run:  .venv/bin/python bench/sync_throughput.py [--subscriptions 2000] [--latency-ms 300]
      [--rate 100] [--concurrency 48] [--database postgresql://postgres@127.0.0.1:5432/test]
The set-up (creating and registering N subscriptions through the slow sandbox) takes a
while; only the drain is timed. PostgreSQL: a throw-away schema is made and dropped.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("bench_seat_api", HERE / "seat_api.py")
assert _spec is not None and _spec.loader is not None
seat_api = importlib.util.module_from_spec(_spec)
sys.modules["bench_seat_api"] = seat_api  # its dataclasses look their module up
_spec.loader.exec_module(seat_api)


def setup(database_url: str, sandbox_url: str, count: int, threads: int) -> list[str]:
    """Migrate, register `count` subscriptions and buy one licence on each (pending)."""
    import stripe

    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.migrate import upgrade
    from connector.app import create_app
    from connector.config import Settings, StripeSettings
    from connector.services.apikeys import Scope, create_key

    engine = make_engine(database_url, pool_size=threads, max_overflow=4)
    upgrade(engine)
    with make_session_factory(engine).begin() as session:
        key = create_key(session, "bench", list(Scope), datetime.now(UTC)).secret
    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": sandbox_url})
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": 36500,
            "recurring": {"interval": "year"},
            "product_data": {"name": "Seat"},
        }
    ).id
    settings = Settings(
        database_url=database_url,
        stripe=StripeSettings(api_key="sk_test_bench", api_base=sandbox_url),
    )
    app = create_app(settings, engine=engine, run_jobs=False)
    auth = {"Authorization": f"Bearer {key}"}

    def one(n: int) -> str:
        customer = client.v1.customers.create({"name": f"Bench {n}"}).id
        sub = client.v1.subscriptions.create(
            {"customer": customer, "items": [{"price": price, "quantity": 10}]}
        ).id
        web = app.test_client()
        registered = web.post(
            "/v1/subscriptions",
            json={
                "stripe_subscription_id": sub,
                "seat_types": [{"name": "users", "stripe_price_id": price}],
            },
            headers=auth,
        )
        assert registered.status_code == 201, registered.json
        subscription_id: str = (registered.json or {})["id"]
        bought = web.post(
            f"/v1/subscriptions/{subscription_id}/seats/users/licenses",
            json={"quantity": 1},
            headers={**auth, "Idempotency-Key": f"bench-{n}"},
        )
        assert bought.status_code == 200, bought.json
        return subscription_id

    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(one, range(count)))
    engine.dispose()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--database", default=seat_api.DEFAULT_POSTGRES)
    args = parser.parse_args()

    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.stripe_port import StripeClientPort, make_stripe_client
    from connector.config import StripeSettings, SyncSettings
    from sync.drain import OutboxDrain

    port = seat_api.free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    sandbox = [
        str(seat_api.BIN / "stripe-sandbox"),
        "--port",
        str(port),
        "--latency-ms",
        str(args.latency_ms),
        "--log-level",
        "warning",
    ]
    with seat_api.throwaway_schema(args.database) as url, seat_api.process(sandbox):
        seat_api.wait_until_up(f"{sandbox_url}/_sandbox/state")
        started = time.monotonic()
        setup(url, sandbox_url, args.subscriptions, min(64, args.concurrency))
        print(f"set-up: {args.subscriptions} subscriptions in {time.monotonic() - started:.0f} s")
        engine = make_engine(url, pool_size=args.concurrency, max_overflow=8)
        stripe_client = make_stripe_client(
            StripeSettings(api_key="sk_test_bench", api_base=sandbox_url, max_network_retries=0)
        )
        drain = OutboxDrain(
            make_session_factory(engine),
            StripeClientPort(stripe_client),
            lambda: datetime.now(UTC),
            SyncSettings(
                max_requests_per_second=args.rate,
                concurrency=args.concurrency,
                subscriptions_per_drain=args.subscriptions,
                drain_budget_seconds=3600,
            ),
            "bench-worker",
        )
        started = time.monotonic()
        report = drain.drain()
        elapsed = time.monotonic() - started
        sent = drain.ctx.rate.acquired  # every Stripe request the worker made
        engine.dispose()
    print(
        f"one worker, {args.concurrency} threads, Stripe answering after {args.latency_ms} ms:\n"
        f"  {report.subscriptions} subscriptions, {report.records_done} changes done, "
        f"{report.records_retrying} retrying, {report.records_dead} dead in {elapsed:.1f} s\n"
        f"  Stripe requests: {sent} = {sent / elapsed:.1f}/s of the {args.rate:.0f}/s allowed "
        f"(ratio {sent / elapsed / args.rate:.2f}); {report.subscriptions / elapsed:.1f} "
        "subscriptions/s"
    )


if __name__ == "__main__":
    main()
