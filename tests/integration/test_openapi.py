"""The OpenAPI document is generated from the code and describes every route exactly."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

API_MD_PATHS = {
    ("post", "/v1/subscriptions"),
    ("get", "/v1/subscriptions/{id}"),
    ("post", "/v1/subscriptions/{id}/seats/{seat_type}/licenses"),
    ("post", "/v1/subscriptions/{id}/seats/{seat_type}/licenses/release"),
    ("put", "/v1/subscriptions/{id}/seats/{seat_type}/holders/{holder_id}"),
    ("patch", "/v1/subscriptions/{id}/seats/{seat_type}/holders/{holder_id}"),
    ("delete", "/v1/subscriptions/{id}/seats/{seat_type}/holders/{holder_id}"),
    ("post", "/v1/subscriptions/{id}/seats/{seat_type}/quote"),
    ("get", "/v1/subscriptions/{id}/ledger"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}


def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def served_routes(app: Any) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        # The docs, and the ops dashboard's HTML pages (/ops/: not the API).
        if rule.endpoint.split(".")[0] in ("openapi", "swagger", "static", "dashboard"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def test_spec_lists_exactly_the_served_routes(app: Any, client: FlaskClient) -> None:
    documented = {(method, path) for path, ops in spec(client)["paths"].items() for method in ops}
    assert documented == served_routes(app)
    assert documented >= API_MD_PATHS


def test_every_v1_operation_needs_a_bearer_key_and_documents_its_errors(
    client: FlaskClient,
) -> None:
    document = spec(client)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in ops.items():
            assert operation["security"] == [{"bearer": []}], (method, path)
            for status in ("401", "403", "404", "422"):
                assert status in operation["responses"], (method, path, status)
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith("/ErrorBody")


def test_state_changing_operations_document_the_idempotency_key(client: FlaskClient) -> None:
    for path, ops in spec(client)["paths"].items():
        for method, operation in ops.items():
            # Stripe's deliveries carry no Idempotency-Key: they are de-duplicated by event id.
            if method == "get" or path.endswith("/quote") or path == "/webhooks/stripe":
                continue
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            assert "Idempotency-Key" in headers, (method, path)


def test_money_is_documented_as_integer_minor_units(client: FlaskClient) -> None:
    money = spec(client)["components"]["schemas"]["Money"]
    assert money["properties"]["amount"]["type"] == "integer"


def test_the_api_docs_are_served_offline_without_a_key(client: FlaskClient) -> None:
    page = client.get("/v1/swagger")
    assert page.status_code == 200
    assert "install" not in page.get_data(as_text=True).lower()
    for asset in ("/v1/swagger/js/swagger-ui-bundle.js", "/v1/swagger/css/swagger-ui.css"):
        response = client.get(asset)
        assert response.status_code == 200 and len(response.data) > 10_000, asset
