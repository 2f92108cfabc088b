"""Benchmark: the seat API under load next to its framework's ceiling, measured from outside.

`seatsync serve` (gunicorn, 2 workers, the connector's own options) on PostgreSQL, with 20
registered subscriptions; `wrk` with 8 connections on loopback. Two requests:
- buy one licence (`POST .../seats/users/licenses`, a fresh Idempotency-Key each time);
- the plan view (`GET /v1/subscriptions/{id}`).
The reference is a bare Flask app on the same gunicorn options and database whose endpoints
look up the hashed API key and insert one row (buy) or read one row (plan view) with
SQLAlchemy. Runs interleave (seatsync, bare, seatsync, bare) on the same machine; only the
ratio is meant to hold on a shared machine.

The sync jobs do not run in the web processes (`sync.run_in_web = false`), as on a busy
installation with `seatsync worker` processes: the API alone is measured.

Run:  .venv/bin/python bench/seat_api.py [--seconds 10] [--rounds 2] [--connections 8]
      [--subscriptions 20] [--database postgresql://postgres@127.0.0.1:5432/test]
Needs `wrk` (Debian package). PostgreSQL: a throw-away schema is made and dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: see bench/common.py
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.common import (
    BIN,
    DEFAULT_POSTGRES,
    SERVE_WORKERS,
    cpu_seconds,
    free_port,
    process,
    process_tree,
    serve_command,
    serve_env,
    throwaway_schema,
    wait_until_booted,
    wait_until_up,
)

SUBSCRIPTIONS = 20
WORKERS = SERVE_WORKERS  # for seatsync and the bare app alike


# --- the bare reference app (its own gunicorn: `seat_api.py serve-bare`) -------------------


def bare_app(database_url: str) -> Any:
    """The framework's ceiling for these requests: a hashed-key look-up plus one insert (buy)
    or one read (plan view), with SQLAlchemy, in Flask."""
    from flask import Flask, jsonify, request
    from sqlalchemy import insert, select

    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.models import ApiKey, Subscription

    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    rows = bare_rows_table()
    app = Flask("bare")

    def key_ok() -> bool:
        secret = request.headers.get("Authorization", "").removeprefix("Bearer ")
        digest = hashlib.sha256(secret.encode()).hexdigest()
        with sessions() as session:
            return session.scalar(select(ApiKey.id).where(ApiKey.secret_hash == digest)) is not None

    @app.post("/bare/<sub>/buy")
    def buy(sub: str) -> Any:
        if not key_ok():
            return jsonify(error="unauthenticated"), 401
        body = request.get_json()
        with sessions.begin() as session:
            session.execute(
                insert(rows).values(
                    subscription_id=sub,
                    idempotency_key=request.headers.get("Idempotency-Key"),
                    quantity=body["quantity"],
                    at=datetime.now(UTC),
                )
            )
        return jsonify(subscription=sub, quantity=body["quantity"])

    @app.get("/bare/<sub>")
    def plan(sub: str) -> Any:
        if not key_ok():
            return jsonify(error="unauthenticated"), 401
        with sessions() as session:
            row = session.get(Subscription, sub)
            return jsonify(id=row.id if row else None, status=row.status if row else None)

    return app


def bare_rows_table() -> Any:
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

    return Table(
        "bench_bare_rows",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("subscription_id", String(40)),
        Column("idempotency_key", String(255)),
        Column("quantity", Integer),
        Column("at", DateTime(timezone=True)),
    )


def create_bare_rows(database_url: str) -> None:
    """Made once, before the bare server starts: two workers each creating it at boot race
    on PostgreSQL's catalogue, and the loser's failed boot stops the whole server."""
    from connector.adapters.database import make_engine

    engine = make_engine(database_url)
    with engine.begin() as connection:
        bare_rows_table().create(connection, checkfirst=True)
    engine.dispose()


def serve_bare(port: int, database_url: str) -> None:
    from gunicorn.app.base import BaseApplication

    from connector.config import Settings
    from connector.server import gunicorn_options

    options = gunicorn_options(Settings(server={"port": port}), workers=WORKERS)  # type: ignore[arg-type]
    options["accesslog"] = None

    class Bare(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return bare_app(database_url)

    Bare().run()


# --- set-up ------------------------------------------------------------------------------


def register(database_url: str, sandbox_url: str, subscriptions: int) -> tuple[str, list[str]]:
    """Migrate, make a key and register the subscriptions (in process, against the sandbox)."""
    import stripe

    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.migrate import upgrade
    from connector.app import create_app
    from connector.config import Settings, StripeSettings
    from connector.services.apikeys import Scope, create_key

    engine = make_engine(database_url)
    upgrade(engine)
    with make_session_factory(engine).begin() as session:
        key = create_key(session, "bench", list(Scope), datetime.now(UTC)).secret
    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": sandbox_url})
    settings = Settings(
        database_url=database_url,
        stripe=StripeSettings(api_key="sk_test_bench", api_base=sandbox_url),
    )
    web = create_app(settings, engine=engine, run_jobs=False).test_client()
    ids = []
    for n in range(subscriptions):
        customer = client.v1.customers.create({"name": f"Bench {n}"})
        price = client.v1.prices.create(
            {
                "currency": "usd",
                "unit_amount": 12000,
                "recurring": {"interval": "year"},
                "product_data": {"name": "Seat"},
            }
        )
        sub = client.v1.subscriptions.create(
            {"customer": customer.id, "items": [{"price": price.id, "quantity": 5}]}
        )
        registered = web.post(
            "/v1/subscriptions",
            json={
                "stripe_subscription_id": sub.id,
                "seat_types": [{"name": "users", "stripe_price_id": price.id}],
            },
            headers={"Authorization": f"Bearer {key}"},
        )
        assert registered.status_code == 201, registered.json
        ids.append((registered.json or {})["id"])
    engine.dispose()
    return key, ids


# --- load ----------------------------------------------------------------------------------

# Each wrk thread has a Lua state of its own, with the same random sequence unless seeded:
# the thread number goes into every Idempotency-Key, so no two requests share one.
LUA = """
local paths = {%(paths)s}
local method = "%(method)s"
local counter = 0
local made = 0
function setup(thread)
  made = made + 1
  thread:set("tid", made)
end
function init(args)
  math.randomseed(os.time() * 100 + tid)
end
request = function()
  counter = counter + 1
  local path = paths[math.random(#paths)]
  local headers = {["Authorization"] = "Bearer %(key)s", ["Content-Type"] = "application/json"}
  if method == "POST" then
    local unique = string.format("%%d-%%d-%%d", tid, counter, os.time())
    headers["Idempotency-Key"] = "wrk-%(run)s-" .. unique
    return wrk.format("POST", path, headers, '{"quantity": 1}')
  end
  return wrk.format("GET", path, headers)
end
"""


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int = 0
    app_cpu_s: float = 0.0  # CPU seconds of the server's processes during the run
    db_cpu_s: float = 0.0  # CPU seconds of PostgreSQL's processes during the run
    # The busiest process's share of the server's CPU: wrk's few keep-alive connections
    # land on the workers unevenly, and a worker uses one core at most (the GIL).
    busiest_share: float = 0.0
    split: str = "?"  # how wrk's connections sat on the workers mid-run, most first: "5/3"


# CPU time per request is what the machine's noise barely moves (throughput on a shared
# 2-core machine swings by half between runs).
def _spent_each(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """CPU each process spent between two readings (one born meanwhile counts from zero)."""
    return [used - before.get(pid, 0.0) for pid, used in after.items()]


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(_spent_each(before, after))


def _postgres() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def measured(server: int, run: Callable[[], Load]) -> Load:
    """`run`, with the CPU the server (process `server` and its workers) and PostgreSQL
    spent meanwhile."""
    app, db = cpu_seconds(process_tree(server)), cpu_seconds(_postgres())
    load = run()
    each = _spent_each(app, cpu_seconds(process_tree(server)))
    load.app_cpu_s = sum(each)
    load.busiest_share = max(each) / (load.app_cpu_s or 1.0)
    load.db_cpu_s = _spent(db, cpu_seconds(_postgres()))
    return load


def wrk(base: str, method: str, paths: list[str], key: str, seconds: int, conns: int) -> Load:
    script = LUA % {
        "paths": ", ".join(f'"{p}"' for p in paths),
        "method": method,
        "key": key,
        "run": uuid.uuid4().hex[:8],  # rounds never reuse a key either
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    running = subprocess.Popen(
        ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", handle.name, base],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(seconds / 2)
    split = connection_split(int(base.rpartition(":")[2]))
    out, err = running.communicate()
    if running.returncode != 0:
        raise subprocess.CalledProcessError(running.returncode, running.args, out, err)
    os.unlink(handle.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Load(rps, p50, p99, int(errors.group(1)) if errors else 0, requests_done, split=split)


def connection_split(port: int) -> str:
    """How many of the established connections to `port` each server process holds, most
    first ("5/3"), from `ss`; "?" without it. A gunicorn worker keeps a keep-alive
    connection for its life, so this is the split for the whole run."""
    try:
        listed = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    held = Counter(re.findall(r"pid=(\d+)", listed))
    return "/".join(str(n) for n in sorted(held.values(), reverse=True)) or "?"


def profile(master_pid: int, port: int, key: str, ids: list[str], args: Any) -> None:
    """py-spy the one gunicorn worker while wrk loads it; collapsed stacks per case."""
    worker = str(process_tree(master_pid)[1])
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    for name, method, paths in (
        ("buy", "POST", [f"/v1/subscriptions/{i}/seats/users/licenses" for i in ids]),
        ("plan", "GET", [f"/v1/subscriptions/{i}" for i in ids]),
    ):
        spy = subprocess.Popen(
            [
                str(BIN / "py-spy"),
                "record",
                "-p",
                worker,
                "-d",
                str(args.seconds),
                "--format",
                "raw",
                "-o",
                str(out / f"{name}.txt"),
                "--threads",
                "--gil",  # CPU: only the thread holding the interpreter is sampled
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        load = wrk(f"http://127.0.0.1:{port}", method, paths, key, args.seconds, args.connections)
        spy.wait(timeout=60)
        print(f"{name}: {load.rps:.0f} req/s (one worker, profiled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--subscriptions",
        type=int,
        default=SUBSCRIPTIONS,
        help="registered subscriptions the requests spread over (fewer: more wait on row locks)",
    )
    parser.add_argument("--database", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="instead: py-spy one worker under each load; collapsed stacks written to DIR",
    )
    args = parser.parse_args()

    sandbox_port, app_port, bare_port = free_port(), free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    with (
        throwaway_schema(args.database) as url,
        process([str(BIN / "stripe-sandbox"), "--port", str(sandbox_port)]),
    ):
        wait_until_up(f"{sandbox_url}/_sandbox/state")
        key, ids = register(url, sandbox_url, args.subscriptions)
        create_bare_rows(url)
        env = serve_env(url, sandbox_url)
        serve = serve_command(app_port, 1 if args.profile else WORKERS)
        bare = [sys.executable, __file__, "serve-bare", str(bare_port), url]
        if args.profile:
            with process(serve, env) as master:
                wait_until_up(f"http://127.0.0.1:{app_port}/healthz")
                profile(master.pid, app_port, key, ids, args)
            return
        with process(serve, env) as ours_server, process(bare) as bare_server:
            wait_until_up(f"http://127.0.0.1:{app_port}/healthz", proc=ours_server)
            wait_until_up(f"http://127.0.0.1:{bare_port}/bare/x", proc=bare_server)
            wait_until_booted(ours_server, WORKERS)
            wait_until_booted(bare_server, WORKERS)
            results: dict[str, list[Load]] = {}
            cases = {
                "buy one licence": (
                    "POST",
                    [f"/v1/subscriptions/{i}/seats/users/licenses" for i in ids],
                    [f"/bare/{i}/buy" for i in ids],
                ),
                "plan view (GET)": (
                    "GET",
                    [f"/v1/subscriptions/{i}" for i in ids],
                    [f"/bare/{i}" for i in ids],
                ),
            }
            for _ in range(args.rounds):
                for name, (method, ours, theirs) in cases.items():
                    for who, server, base, paths in (
                        ("seatsync", ours_server.pid, f"http://127.0.0.1:{app_port}", ours),
                        ("bare", bare_server.pid, f"http://127.0.0.1:{bare_port}", theirs),
                    ):
                        load = measured(
                            server,
                            partial(wrk, base, method, paths, key, args.seconds, args.connections),
                        )
                        results.setdefault(f"{name}|{who}", []).append(load)
    print(f"seat API, {args.connections} connections, {args.seconds}s x {args.rounds} rounds")
    print(
        f"{'':18} {'seatsync req/s':>15} {'p50/p99 ms':>13} {'bare req/s':>11} "
        f"{'p50/p99 ms':>13} {'ratio':>6}"
    )
    for name in cases:
        ours_l, bare_l = results[f"{name}|seatsync"], results[f"{name}|bare"]
        ours_rps = sum(r.rps for r in ours_l) / len(ours_l)
        bare_rps = sum(r.rps for r in bare_l) / len(bare_l)
        errors = sum(r.non_2xx for r in ours_l)
        print(
            f"{name:18} {ours_rps:15.0f} {_latency(ours_l):>13} {bare_rps:11.0f} "
            f"{_latency(bare_l):>13} {ours_rps / bare_rps:6.2f}"
            + (f"  ({errors} non-2xx!)" if errors else "")
        )
    print("CPU per request, ms (server + PostgreSQL); the ratio is bare / seatsync:")
    for name in cases:
        ours_app, ours_db = _cpu_per_request(results[f"{name}|seatsync"])
        bare_app, bare_db = _cpu_per_request(results[f"{name}|bare"])
        print(
            f"{name:18} seatsync {ours_app:5.2f} + {ours_db:5.2f}   bare {bare_app:5.2f} + "
            f"{bare_db:5.2f}   ratio {(bare_app + bare_db) / (ours_app + ours_db):5.2f}"
        )
    _print_rounds(
        "The busiest worker's share of the server's CPU, each round (0.50: even):",
        cases,
        results,
        lambda load: f"{load.busiest_share:.2f}",
    )
    _print_rounds(
        "Each round: p99 ms [wrk's connections over the workers] (the table: the worst round):",
        cases,
        results,
        lambda load: f"{load.p99_ms:.1f} [{load.split}]",
    )


def _print_rounds(
    title: str, cases: Iterable[str], results: dict[str, list[Load]], show: Callable[[Load], str]
) -> None:
    """One line per case: each round's figure, seatsync's then the bare reference's."""
    print(title)
    for name in cases:
        ours, bare = (" ".join(map(show, results[f"{name}|{who}"])) for who in ("seatsync", "bare"))
        print(f"{name:18} seatsync {ours}   bare {bare}")


def _cpu_per_request(loads: list[Load]) -> tuple[float, float]:
    """Milliseconds of CPU per request: the server's, PostgreSQL's."""
    done = sum(r.requests for r in loads) or 1
    return (
        1000 * sum(r.app_cpu_s for r in loads) / done,
        1000 * sum(r.db_cpu_s for r in loads) / done,
    )


def _latency(loads: list[Load]) -> str:
    """The worst round's p50 and p99."""
    return f"{max(r.p50_ms for r in loads):.1f}/{max(r.p99_ms for r in loads):.1f}"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve-bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
    else:
        main()
