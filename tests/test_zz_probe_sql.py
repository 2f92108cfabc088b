from __future__ import annotations
from typing import Any
from sqlalchemy import event
from tests import stripe_setup
from tests.helpers import buying


def test_count(client: Any, auth: Any, stripe_client: Any, engine: Any, database: Any) -> None:
    price = stripe_setup.price(stripe_client, 12000, interval="year")
    sub = stripe_setup.subscription(stripe_client, [(price, 5)])
    r = client.post("/v1/subscriptions", json={"stripe_subscription_id": sub.id, "seat_types": [{"name": "users", "stripe_price_id": price}]}, headers=auth)
    sid = r.json["id"]
    stmts: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cur, st, params, ctx, many: stmts.append(st))
    for label, call in (("buy", lambda: client.post(f"/v1/subscriptions/{sid}/seats/users/licenses", json={"quantity": 1}, headers=buying(auth))),
                        ("buy2", lambda: client.post(f"/v1/subscriptions/{sid}/seats/users/licenses", json={"quantity": 1}, headers=buying(auth))),
                        ("plan", lambda: client.get(f"/v1/subscriptions/{sid}", headers=auth))):
        stmts.clear()
        resp = call()
        assert resp.status_code in (200, 201), resp.json
        print(f"\n== {label} ({database.name if hasattr(database,'name') else ''}): {len(stmts)} statements")
        for s in stmts:
            print("   ", " ".join(s.split())[:160])
