"""`seatsync-demo`: the connector and a local Stripe sandbox on this machine, no account.

The sandbox is a fake Stripe kept in memory (a test and demo tool, never real money), so
the demo database is created afresh each run to match it.  The one module of
``stripe_sandbox`` that imports the connector (never the other way round): it needs
seatsync installed beside this package (scripts/bootstrap installs both).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import stripe
from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.serving import BaseWSGIServer, make_server

from connector.adapters.database import make_engine, make_session_factory
from connector.adapters.migrate import upgrade
from connector.adapters.stripe_port import make_stripe_client
from connector.app import create_app
from connector.config import Settings, StripeSettings
from connector.observability import format_root_handlers
from connector.services.apikeys import Scope, create_key
from stripe_sandbox.double import StripeDouble
from stripe_sandbox.server import create_sandbox_app

DEMO_STRIPE_KEY = "sk_test_seatsync_demo"


def _check_free(port: int, what: str) -> None:
    """A taken port stops the demo before anything is set up or printed (werkzeug would
    print its own advice and exit half-way)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise SystemExit(
                f"cannot listen on 127.0.0.1:{port} for the {what} ({error.strerror}): "
                "choose free ports, e.g. scripts/demo --port 8001 --sandbox-port 12112"
            ) from error


def _bind(app: Flask, port: int, what: str) -> BaseWSGIServer:
    _check_free(port, what)
    return make_server("127.0.0.1", port, app, threaded=True)


def _serve_in_background(app: Flask, port: int, name: str) -> None:
    server = _bind(app, port, name)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()


def _fresh_sqlite(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)


def _demo_subscription(client: stripe.StripeClient) -> tuple[str, str, str]:
    """A customer on a yearly 120.00-per-user price, 8 users, and a yearly 60.00-per-agent
    price, 3 agents (a true-up contract); returns the subscription and the two prices."""
    customer = client.v1.customers.create({"name": "Acme GmbH", "email": "billing@acme.test"})
    price = client.v1.prices.create(
        {
            "currency": "eur",
            "unit_amount": 12000,
            "recurring": {"interval": "year"},
            "product_data": {"name": "User licence"},
        }
    )
    agents = client.v1.prices.create(
        {
            "currency": "eur",
            "unit_amount": 6000,
            "recurring": {"interval": "year"},
            "product_data": {"name": "Support agent licence"},
        }
    )
    subscription = client.v1.subscriptions.create(
        {
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": 8}, {"price": agents.id, "quantity": 3}],
        }
    )
    return subscription.id, price.id, agents.id


def run_demo(port: int, sandbox_port: int, database_url: str) -> None:
    _check_free(port, "connector")
    _check_free(sandbox_port, "stripe-sandbox")
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    double = StripeDouble(int(time.time()))
    # The sandbox delivers its events, signed, to the connector's receiver (deliveries made
    # before the connector is up are retried by the sandbox's forwarder).
    _serve_in_background(
        create_sandbox_app(double, webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe"),
        sandbox_port,
        "stripe-sandbox",
    )
    settings = Settings(
        database_url=database_url,
        stripe=StripeSettings(
            api_key=DEMO_STRIPE_KEY,
            api_base=sandbox_url,
            webhook_secrets=[double.webhook_secret],
        ),
    )
    # SEATSYNC_LOG_FORMAT=json for JSON lines; either way they carry the request / event ids
    format_root_handlers(settings.log_format)
    _fresh_sqlite(database_url)
    engine = make_engine(database_url)
    upgrade(engine)
    with make_session_factory(engine).begin() as session:
        key = create_key(session, "demo", list(Scope), datetime.now(UTC))

    stripe_subscription_id, price_id, agents_price_id = _demo_subscription(
        make_stripe_client(settings.stripe)
    )
    app = create_app(settings, engine=engine)
    registered = app.test_client().post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": stripe_subscription_id,
            "seat_types": [
                {
                    "name": "users",
                    "stripe_price_id": price_id,
                    "policy": "manual",
                    "floor": 5,
                    # billed by team membership (seed 004): archiving a team stops billing
                    # its members who are in no other active team, from the renewal
                    "membership_required": True,
                },
                # over-allocation allowed, settled at the true-up (seed 002)
                {"name": "agents", "stripe_price_id": agents_price_id, "policy": "true_up"},
            ],
        },
        headers={"Authorization": f"Bearer {key.secret}"},
    )
    if registered.status_code != 201:
        raise SystemExit(f"demo contract was refused: {registered.json}")
    subscription_id = (registered.json or {})["id"]
    server = _bind(app, port, "connector")
    base = f"http://127.0.0.1:{port}"
    print(
        f"""
seatsync demo — connector and a FAKE local Stripe (no account, no real money)

  connector        {base}
  OpenAPI          {base}/v1/openapi.json
  ops dashboard    {base}/ops/  (sign in with the API key below)
  Stripe sandbox   {sandbox_url}/_sandbox/state
  database         {database_url} (recreated each run)

  API key (all scopes):  {key.secret}
  demo subscription:     {subscription_id}  (Stripe {stripe_subscription_id}: 8 users, floor 5;
                         3 agents under a true-up)

Try:
  export KEY={key.secret} SUB={subscription_id}
  curl -s {base}/v1/subscriptions/$SUB -H "Authorization: Bearer $KEY"
  curl -s -X POST {base}/v1/subscriptions/$SUB/seats/users/quote \\
       -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{{"quantity": 2}}'
  curl -s -X POST {base}/v1/subscriptions/$SUB/seats/users/licenses \\
       -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
       -H "Idempotency-Key: $(uuidgen || date +%s%N)" -d '{{"quantity": 2}}'

Ctrl-C stops everything.
""",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
