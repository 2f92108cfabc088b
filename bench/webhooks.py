"""Benchmark: Stripe webhook deliveries verified, stored and acknowledged per second, and the
99th percentile of the acknowledgement time, for the connector's receiver served by
`seatsync serve` (gunicorn, the same options) next to a bare Flask endpoint that verifies
the signature with the Stripe SDK and inserts one row — same gunicorn options, same
database, same machine, same run.

The connector runs with `sync.run_in_web = false` (handlers in a `seatsync worker`, as on a
busy installation), so only the receiver is measured. Each delivery is a real `invoice.paid`
event of the Stripe double (about 4 kB), with its own id, signed like Stripe signs.

Run:  .venv/bin/python bench/webhooks.py [--events 5000] [--threads 8] [--rounds 2]
      [--database postgresql://postgres@127.0.0.1:5432/test | --sqlite] [--write-docs]
(PostgreSQL: a throw-away schema is made in that database and dropped afterwards.)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

if not __package__:  # run as a script: see bench/common.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.common import (
    DEFAULT_POSTGRES,
    ROOT,
    free_port,
    process,
    serve_command,
    serve_env,
    throwaway_schema,
    wait_until_booted,
    wait_until_up,
)

SECRET = "whsec_bench_secret"


# --- the bare endpoint (run in its own gunicorn by `webhooks.py serve-bare`) -------------


def bare_table() -> Any:
    from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table

    return Table(
        "bench_bare_events",
        MetaData(),
        Column("id", String(255), primary_key=True),
        Column("type", String(128)),
        Column("payload", JSON),
        Column("received_at", DateTime(timezone=True)),
    )


def bare_app(database_url: str) -> Any:
    """Flask, the SDK's signature check, one INSERT: the least a receiver can do."""
    import flask
    import stripe
    from sqlalchemy import insert

    from connector.adapters.database import make_engine

    engine = make_engine(database_url)
    table = bare_table()
    app = flask.Flask("bare")

    @app.post("/webhooks/stripe")
    def receive() -> Any:
        body = flask.request.get_data()
        header = flask.request.headers.get("Stripe-Signature", "")
        try:
            stripe.WebhookSignature.verify_header(body.decode("utf-8"), header, SECRET, 300)
        except stripe.SignatureVerificationError:
            return flask.jsonify(error="signature"), 400
        event = json.loads(body)
        with engine.begin() as connection:
            connection.execute(
                insert(table).values(
                    id=event["id"],
                    type=event["type"],
                    payload=event,
                    received_at=datetime.now(UTC),
                )
            )
        return flask.jsonify(received=True, duplicate=False)

    @app.get("/healthz")
    def healthz() -> Any:
        return flask.jsonify(status="ok")

    return app


def serve_bare(port: int, database_url: str, workers: int) -> None:
    """gunicorn with exactly the options `seatsync serve` uses."""
    from gunicorn.app.base import BaseApplication

    from connector.config import Settings
    from connector.server import gunicorn_options

    settings = Settings(database_url=database_url)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"port": port})}
    )
    options = gunicorn_options(settings, workers)

    class Bare(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return bare_app(database_url)

    Bare().run()


# --- processes -----------------------------------------------------------------------------


@contextmanager
def running(
    command: list[str], env: dict[str, str], health: str, log: Path, workers: int
) -> Iterator[None]:
    with process(command, env, log) as proc:
        wait_until_up(health, proc=proc, log=log)
        wait_until_booted(proc, workers)
        yield


# --- the database --------------------------------------------------------------------------


@contextmanager
def bench_database(url: str | None, sqlite: bool, workdir: Path) -> Iterator[str]:
    """A migrated database of its own: a fresh SQLite file, or a throw-away PostgreSQL
    schema (its name in the URL, so every process lands in it)."""
    from connector.adapters.database import make_engine
    from connector.adapters.migrate import upgrade

    if sqlite:
        found = f"sqlite:///{workdir / 'bench.db'}"
        engine = make_engine(found)
        upgrade(engine)
        bare_table().create(engine)
        engine.dispose()
        yield found
        return
    with throwaway_schema(url or DEFAULT_POSTGRES) as found:
        engine = make_engine(found)
        upgrade(engine)
        bare_table().create(engine)
        engine.dispose()
        yield found


# --- load ----------------------------------------------------------------------------------


def event_template() -> dict[str, Any]:
    """A real `invoice.paid` event of the Stripe double (what the connector receives)."""
    import responses
    import stripe

    from stripe_sandbox.double import StripeDouble
    from stripe_sandbox.responses_adapter import install

    double = StripeDouble(now=int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        install(rsps, double, "https://api.stripe.bench")
        client = stripe.StripeClient(
            "sk_test_bench",
            http_client=stripe.RequestsClient(),
            base_addresses={"api": "https://api.stripe.bench"},
        )
        price = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 36500,
                "recurring": {"interval": "year"},  # type: ignore[typeddict-item]
                "product_data": {"name": "Seat"},
            }
        ).id
        customer = client.v1.customers.create(params={"name": "Bench"}).id
        client.v1.subscriptions.create(
            params={"customer": customer, "items": [{"price": price, "quantity": 12}]}
        )
    found: dict[str, Any] = next(e for e in double.events if e["type"] == "invoice.paid")
    return found


@dataclass
class Result:
    events: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000


def sign(body: bytes) -> str:
    t = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def hammer(url: str, bodies: list[bytes], threads: int) -> Result:
    """POST every body once from `threads` threads (a keep-alive session each)."""
    local = threading.local()
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()

    def send(body: bytes) -> None:
        nonlocal failures
        if not hasattr(local, "session"):
            local.session = requests.Session()
        headers = {"Content-Type": "application/json", "Stripe-Signature": sign(body)}
        started = time.perf_counter()
        response = local.session.post(url, data=body, headers=headers, timeout=30)
        took = time.perf_counter() - started
        with lock:
            latencies.append(took)
            if response.status_code != 200 or response.json().get("duplicate"):
                failures += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, bodies))
    return Result(len(bodies), time.perf_counter() - started, latencies, failures)


def bodies(template: dict[str, Any], prefix: str, count: int) -> list[bytes]:
    return [json.dumps({**template, "id": f"evt_{prefix}_{i:07d}"}).encode() for i in range(count)]


def measure(
    name: str, url: str, template: dict[str, Any], events: int, threads: int, round_no: int
) -> Result:
    hammer(url, bodies(template, f"warm{name}{round_no}", min(200, events)), threads)
    return hammer(url, bodies(template, f"{name}{round_no}", events), threads)


def run(args: argparse.Namespace) -> tuple[Result, Result, str]:
    template = event_template()
    workdir = Path(tempfile.mkdtemp(prefix="seatsync-bench-"))
    with bench_database(args.database, args.sqlite, workdir) as database_url:
        connector_port, bare_port = free_port(), free_port()
        connector_env = serve_env(
            database_url,
            "http://127.0.0.1:9",  # never called
            SEATSYNC_STRIPE__WEBHOOK_SECRETS=f'["{SECRET}"]',
        )
        connector = serve_command(connector_port, args.workers)
        bare = [
            sys.executable,
            str(Path(__file__).resolve()),
            "serve-bare",
            "--port",
            str(bare_port),
            "--database",
            database_url,
            "--workers",
            str(args.workers),
        ]
        ours: list[Result] = []
        theirs: list[Result] = []
        for round_no in range(args.rounds):  # alternated, so drift hits both alike
            with running(
                connector,
                connector_env,
                f"http://127.0.0.1:{connector_port}/healthz",
                workdir / "connector.log",
                args.workers,
            ):
                ours.append(
                    measure(
                        "c",
                        f"http://127.0.0.1:{connector_port}/webhooks/stripe",
                        template,
                        args.events,
                        args.threads,
                        round_no,
                    )
                )
            with running(
                bare,
                dict(os.environ),
                f"http://127.0.0.1:{bare_port}/healthz",
                workdir / "bare.log",
                args.workers,
            ):
                theirs.append(
                    measure(
                        "b",
                        f"http://127.0.0.1:{bare_port}/webhooks/stripe",
                        template,
                        args.events,
                        args.threads,
                        round_no,
                    )
                )
        backend = "SQLite" if args.sqlite else "PostgreSQL"
    shutil.rmtree(workdir, ignore_errors=True)
    return _merge(ours), _merge(theirs), backend


def _merge(results: list[Result]) -> Result:
    return Result(
        sum(r.events for r in results),
        sum(r.seconds for r in results),
        [x for r in results for x in r.latencies],
        sum(r.failures for r in results),
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def report(ours: Result, theirs: Result, backend: str, args: argparse.Namespace) -> str:
    ratio = ours.per_second / theirs.per_second
    return "\n".join(
        [
            f"{args.events} events x {args.rounds} round(s), {args.threads} client threads, "
            f"{args.workers} gunicorn workers, {backend}",
            f"receiver (seatsync serve):   {ours.per_second:7.0f} events/s, "
            f"p99 {ours.p99_ms:6.1f} ms, median {ours.median_ms:5.1f} ms, "
            f"failures {ours.failures}",
            f"bare Flask (SDK + 1 insert): {theirs.per_second:7.0f} events/s, "
            f"p99 {theirs.p99_ms:6.1f} ms, median {theirs.median_ms:5.1f} ms, "
            f"failures {theirs.failures}",
            f"ratio: {ratio:.0%} of the bare endpoint's throughput (target: at least 70%)",
        ]
    )


def write_docs(text: str, args: argparse.Namespace, ours: Result, theirs: Result) -> None:
    path = ROOT / "docs" / "BENCHMARKS.md"
    heading = "## Webhook receiver vs a bare endpoint"
    command = "`.venv/bin/python bench/webhooks.py " + " ".join(sys.argv[1:]) + "`"
    section = "\n".join(
        [
            heading,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}, with {command}: signed "
            "`invoice.paid` deliveries (about 4 kB each) sent by client threads on the same "
            "machine to `seatsync serve` (gunicorn with the options in "
            "`connector/server.py`, `sync.run_in_web = false`) and, in alternate rounds, to a "
            "bare Flask endpoint under the same gunicorn options that checks the signature "
            "with the SDK (`WebhookSignature.verify_header`) and inserts one row.",
            "",
            "| | events/s | p99 ack | median ack |",
            "|---|---|---|---|",
            f"| connector receiver | {ours.per_second:.0f} | {ours.p99_ms:.1f} ms | "
            f"{ours.median_ms:.1f} ms |",
            f"| bare Flask endpoint | {theirs.per_second:.0f} | {theirs.p99_ms:.1f} ms | "
            f"{theirs.median_ms:.1f} ms |",
            "",
            f"Ratio: **{ours.per_second / theirs.per_second:.0%}** of the bare endpoint "
            "(target: at least 70%). The receiver also checks the body's shape, inserts with "
            "`ON CONFLICT (id) DO NOTHING` (a duplicate is acknowledged without a row), runs "
            "the API's request hooks and counts outcomes for `/metrics`.",
            "",
            "```",
            text,
            "```",
            "",
        ]
    )
    section = "\n".join(
        textwrap.fill(line, 90, break_on_hyphens=False)
        if len(line) > 90 and line[0] not in "|`"
        else line
        for line in section.split("\n")
    )
    current = path.read_text()
    if heading in current:
        start = current.index(heading)
        rest = current[start + len(heading) :]
        end = rest.find("\n## ")
        current = current[:start] + section + ("" if end < 0 else rest[end + 1 :])
    else:
        current = current.rstrip("\n") + "\n\n" + section
    path.write_text(current)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-bare":
        parser = argparse.ArgumentParser(prog="webhooks.py serve-bare")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--database", required=True)
        parser.add_argument("--workers", type=int, default=2)
        args = parser.parse_args(sys.argv[2:])
        serve_bare(args.port, args.database, args.workers)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="deliveries per round")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (as serve)")
    parser.add_argument("--database", default=None, help=f"PostgreSQL (default {DEFAULT_POSTGRES})")
    parser.add_argument("--sqlite", action="store_true", help="a fresh SQLite file instead")
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    ours, theirs, backend = run(args)
    text = report(ours, theirs, backend, args)
    print(text)
    if args.write_docs:
        write_docs(text, args, ours, theirs)
    if ours.failures or theirs.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
