"""Benchmark: how busy one sync worker keeps Stripe's account rate when Stripe is slow.

N registered subscriptions each buy one licence at once (through the connector's API);
a Stripe sandbox server answers every API request after `--latency-ms` (Stripe's usual
write time is about 300 ms); ONE worker (`OutboxDrain`) with the account rate set to
`--rate` requests a second drains them. Printed: Stripe requests a second while draining,
next to the allowed rate (the reference of the same run), and subscriptions a second.

With `--sustained-seconds S`: instead, the subscriptions start in sync, and changes arrive
through the API at `--changes-per-second` (one licence on a random subscription each) for S
seconds while the worker drains them as they come; printed: the lag from each change's
acceptance to Stripe's answer (p50, p99, max) and how many reached Stripe.

Run:  .venv/bin/python bench/sync_throughput.py [--subscriptions 2000] [--latency-ms 300]
      [--rate 100] [--concurrency 48] [--database postgresql://postgres@127.0.0.1:5432/test]
      [--sustained-seconds 60 --changes-per-second 100]
The set-up (creating and registering N subscriptions through the slow sandbox) takes a
while; only the drain is timed. PostgreSQL: a throw-away schema is made and dropped.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: see bench/common.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import common


def setup(
    database_url: str, sandbox_url: str, count: int, threads: int, *, buy: bool = True
) -> tuple[list[str], str]:
    """Migrate, register `count` subscriptions and (with `buy`) buy one licence on each
    (pending); returns their ids and the API key."""
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
        if not buy:
            return subscription_id
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
    return ids, key


def produce(base: str, key: str, ids: list[str], rate: float, seconds: float) -> None:
    """The product's backend, in a process of its own: one licence on a random subscription
    at `rate` a second for `seconds`, over HTTP; prints how many were accepted and when the
    last one was (a producer that falls behind says so: its rate is what it made)."""
    import requests

    threads = 8
    period, deadline = threads / rate, time.monotonic() + seconds
    started = time.monotonic()
    accepted: list[float] = []

    def one(n: int) -> None:
        http, rng, at, i = requests.Session(), random.Random(n), time.monotonic(), 0
        http.headers["Authorization"] = f"Bearer {key}"
        at += period * n / threads  # the threads take turns
        time.sleep(max(0.0, at - time.monotonic()))
        while at < deadline:
            i += 1
            response = http.post(
                f"{base}/v1/subscriptions/{rng.choice(ids)}/seats/users/licenses",
                json={"quantity": 1},
                headers={"Idempotency-Key": f"sustained-{n}-{i}"},
            )
            assert response.status_code == 200, response.text
            accepted.append(time.monotonic())
            at += period
            time.sleep(max(0.0, at - time.monotonic()))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(threads)))
    print(len(accepted), max(accepted) - started)


def sustained(url: str, sandbox_url: str, ids: list[str], key: str, drain: Any, args: Any) -> None:
    """Changes at a steady rate through `seatsync serve` (gunicorn, 2 workers) from another
    process, while this process's one worker drains them; then the lags."""
    import subprocess

    from sqlalchemy import text

    from connector.adapters.database import make_engine

    app_port = common.free_port()
    base = f"http://127.0.0.1:{app_port}"
    with common.process(
        common.serve_command(app_port), common.serve_env(url, sandbox_url)
    ) as server:
        common.wait_until_up(f"{base}/healthz")
        common.wait_until_booted(server, common.SERVE_WORKERS)
        window_start = datetime.now(UTC)
        producer = subprocess.Popen(
            [
                *(sys.executable, __file__, "produce", base, key),
                *(str(args.changes_per_second), str(args.sustained_seconds), *ids),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        requests_before, cpu_before = drain.ctx.rate.acquired, time.process_time()
        syncs, errors, started = 0, list[str](), time.monotonic()
        while producer.poll() is None:
            report = drain.drain()
            synced = report.subscriptions
            syncs, errors = syncs + synced, errors + report.errors
            if not synced:
                time.sleep(0.05)  # nothing due yet
        window = time.monotonic() - started
        requests, cpu = drain.ctx.rate.acquired - requests_before, time.process_time() - cpu_before
        out, _ = producer.communicate()
        assert producer.returncode == 0, "the producer failed"
        made, producing = int(out.split()[0]), float(out.split()[1])
        while drain.drain().records_done:  # the tail
            pass
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT status, created_at, done_at FROM outbox WHERE created_at >= :start "
                "ORDER BY created_at"
            ),
            {"start": window_start},
        ).all()
    engine.dispose()
    lags = sorted((row.done_at - row.created_at).total_seconds() for row in rows if row.done_at)
    pending = sum(1 for row in rows if row.done_at is None)

    def pct(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))] if lags else float("nan")

    print(
        f"{made} changes in {producing:.0f} s ({made / producing:.0f}/s) over {len(ids)} "
        f"subscriptions, through seatsync serve; one worker, {args.concurrency} threads, "
        f"Stripe at {args.latency_ms} ms, {args.rate:.0f} requests/s allowed:\n"
        f"  lag from acceptance to Stripe: p50 {pct(0.5):.1f} s, p99 {pct(0.99):.1f} s, "
        f"max {lags[-1] if lags else float('nan'):.1f} s; {len(lags)} reached Stripe, "
        f"{pending} not\n"
        f"  while changes came: {requests / window:.1f} Stripe requests/s, "
        f"{syncs / window:.1f} subscription syncs/s ({requests / max(1, syncs):.2f} requests "
        f"and {made / max(1, syncs):.2f} changes a sync); the worker's CPU "
        f"{cpu / window:.0%} of a core, {1000 * cpu / max(1, syncs):.1f} ms a sync; "
        f"{len(errors)} syncs failed" + "".join(f"\n    {e}" for e in errors[:5])
    )


def main() -> None:
    if sys.argv[1:2] == ["produce"]:
        base, key, rate, seconds, *ids = sys.argv[2:]
        produce(base, key, ids, float(rate), float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--database", default=common.DEFAULT_POSTGRES)
    parser.add_argument("--sustained-seconds", type=int, default=0)
    parser.add_argument("--changes-per-second", type=float, default=100.0)
    args = parser.parse_args()

    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.stripe_port import StripeClientPort, make_stripe_client
    from connector.config import StripeSettings, SyncSettings
    from sync.drain import OutboxDrain

    port = common.free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    sandbox = [
        str(common.BIN / "stripe-sandbox"),
        "--port",
        str(port),
        "--latency-ms",
        str(args.latency_ms),
        "--log-level",
        "warning",
    ]
    with common.throwaway_schema(args.database) as url, common.process(sandbox):
        common.wait_until_up(f"{sandbox_url}/_sandbox/state")
        started = time.monotonic()
        ids, key = setup(
            url,
            sandbox_url,
            args.subscriptions,
            min(64, args.concurrency),
            buy=not args.sustained_seconds,
        )
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
                drain_budget_seconds=3600,
            ),
            "bench-worker",
        )
        if args.sustained_seconds:
            sustained(url, sandbox_url, ids, key, drain, args)
            engine.dispose()
            return
        started, cpu = time.monotonic(), time.process_time()
        report = drain.drain()
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        sent = drain.ctx.rate.acquired  # every Stripe request the worker made
        engine.dispose()
    print(
        f"one worker, {args.concurrency} threads, Stripe answering after {args.latency_ms} ms:\n"
        f"  {report.subscriptions} subscriptions, {report.records_done} changes done, "
        f"{report.records_retrying} retrying, {report.records_dead} dead in {elapsed:.1f} s\n"
        f"  Stripe requests: {sent} = {sent / elapsed:.1f}/s of the {args.rate:.0f}/s allowed "
        f"(ratio {sent / elapsed / args.rate:.2f}); {report.subscriptions / elapsed:.1f} "
        f"subscriptions/s; the worker's CPU {1000 * cpu / max(1, report.subscriptions):.1f} ms "
        "a subscription"
    )


if __name__ == "__main__":
    main()
