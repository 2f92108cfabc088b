"""Per-request plumbing: the wiring, authentication, scopes and idempotent changes."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from flask import Flask, Response, current_app, g, jsonify, request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import STORED_REQUESTS_TABLE, IdempotentRequest
from connector.adapters.stripe_port import StripePort
from connector.api.errors import KEY_REQUIRED, error_response
from connector.config import Settings
from connector.errors import ServiceError
from connector.observability import bind_request_id
from connector.services.apikeys import KeyCache, Scope
from connector.services.seats import Actor, ChangeContext

# Built once (Core, values as parameters): every keyed change runs it.
STORE_ANSWER = {  # by dialect: `ON CONFLICT DO NOTHING` is each one's own construct
    "postgresql": postgresql.insert(STORED_REQUESTS_TABLE)
    .on_conflict_do_nothing()
    .returning(STORED_REQUESTS_TABLE.c.id),
    "sqlite": sqlite.insert(STORED_REQUESTS_TABLE)
    .on_conflict_do_nothing()
    .returning(STORED_REQUESTS_TABLE.c.id),
}

# Route endpoint -> scope it needs. Filled by @scoped; a /v1 route missing here is refused.
ROUTE_SCOPES: dict[str, Scope] = {}
# The API's own documentation: the OpenAPI document and Swagger UI (its assets are served
# from the installed package, offline).
PUBLIC_ENDPOINTS = {
    "openapi.doc_url",
    "openapi.openapi",
    "openapi.static",
    "static",
    "swagger.swagger",
    "swagger.static",
}
F = TypeVar("F", bound=Callable[..., object])


@dataclass
class Wiring:
    """What the app was built with; reached from views through `wiring()`."""

    settings: Settings
    sessions: SessionFactory
    stripe: StripePort
    clock: Callable[[], datetime]
    # Reconcile one subscription with Stripe and send what is pending (ops' resync). Given by
    # the composition root (connector.app), so the API never imports the sync.
    resync: Callable[[str], None]
    # `seatsync-<installation id>`: the start of every idempotency key sent to Stripe.
    key_prefix: Callable[[], str]
    # Sessions for the read-only views (no transaction: see make_read_session_factory).
    reads: SessionFactory
    # API keys verified lately (a revocation elsewhere takes effect within its TTL).
    keys: KeyCache = field(default_factory=KeyCache)


def wiring_of(app: Flask) -> Wiring:
    found: Wiring = app.extensions["seatsync"]
    return found


def wiring() -> Wiring:
    return wiring_of(current_app)


def scoped(blueprint_name: str, scope: Scope) -> Callable[[F], F]:
    """Declare the scope a route needs (checked before the request body is even read)."""

    def register(view: F) -> F:
        ROUTE_SCOPES[f"{blueprint_name}.{view.__name__}"] = scope
        return view

    return register


def _authenticate() -> Response | None:
    endpoint = request.endpoint or ""
    if request.routing_exception is not None:  # no such route: answered 404/405 as JSON
        return None
    if not request.path.startswith("/v1/") or endpoint in PUBLIC_ENDPOINTS:
        return None
    scope = ROUTE_SCOPES.get(endpoint)
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return error_response(
            401, "unauthenticated", "send an API key as `Authorization: Bearer <key>`"
        )
    key = wiring().keys.lookup(wiring().reads, secret.strip())  # no transaction, no lock
    if key is None:
        return error_response(401, "unauthenticated", "unknown or revoked API key")
    if scope is None or scope.value not in key.scopes:
        needed = scope.value if scope else "a scope this route does not grant"
        return error_response(
            403,
            "forbidden",
            f"this API key lacks the scope {needed!r}",
            {"scopes": list(key.scopes)},
        )
    g.actor = Actor(key_id=key.id, name=key.name)
    return None


def _check_json_body() -> Response | None:
    # Only the API's bodies: a webhook's body is read (size-limited) and parsed by its
    # receiver, after its signature is checked.
    if not request.path.startswith("/v1/"):
        return None
    if request.method not in ("POST", "PUT", "PATCH") or not request.get_data(cache=True):
        return None
    if not request.is_json:
        return error_response(
            415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)"
        )
    try:
        json.loads(request.get_data(cache=True))
    except ValueError as error:
        return error_response(400, "malformed_json", f"the body is not valid JSON: {error}")
    except RecursionError:
        return error_response(400, "malformed_json", "the body is nested too deeply")
    return None


def install_request_hooks(app: Flask) -> None:
    @app.before_request
    def _before() -> Response | None:
        g.request_id = request.headers.get("Request-Id", "")[:64] or f"req_{secrets.token_hex(8)}"
        bind_request_id(g.request_id)  # on every log record of the request
        return _authenticate() or _check_json_body()

    @app.after_request
    def _after(response: Response) -> Response:
        response.headers["Request-Id"] = g.get("request_id", "")
        return response


def actor() -> Actor:
    found: Actor = g.actor
    return found


def change_context() -> ChangeContext:
    return ChangeContext(actor=actor(), now=wiring().clock(), request_id=g.request_id)


def _fingerprint() -> str:
    body = request.get_json(silent=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{request.method} {request.path} {canonical}".encode()).hexdigest()


def _replay(session: Session, key: str) -> Response | None:
    stored = session.scalars(
        select(IdempotentRequest).where(
            IdempotentRequest.api_key_id == actor().key_id, IdempotentRequest.key == key
        )
    ).first()
    if stored is None:
        return None
    if stored.request_fingerprint != _fingerprint():
        return error_response(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request; use a new key",
        )
    response = jsonify(stored.response_body)
    response.status_code = stored.status_code
    response.headers["Idempotent-Replayed"] = "true"
    return response


def require_idempotency_key() -> str:
    """Requests that can charge money refuse to run without a key (a client's blind retry
    would otherwise charge twice)."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        raise ServiceError("idempotency_key_required", KEY_REQUIRED)
    return key


def stripe_idempotency_key(purpose: str, key: str) -> str:
    """The key sent to Stripe for a request's own Stripe write: this installation's prefix,
    then a digest of the caller's key scoped to its API key (at most ~90 characters)."""
    digest = hashlib.sha256(f"{actor().key_id}:{key}".encode()).hexdigest()[:40]
    return f"{wiring().key_prefix()}-{purpose}-{digest}"


def replay_if_repeated() -> Response | None:
    """Before a request calls Stripe itself: the stored answer to its key (or a 409 if the
    key came with another body), so a repeat never reaches Stripe."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    with wiring().sessions() as session:
        return _replay(session, key)


class _AnsweredBefore(Exception):
    """The request's key already has a stored answer."""


def _answer_before(key: str | None, error: Exception) -> Response:
    """The key's stored answer, which answers every repeat however running it again ended;
    without one, the error stands."""
    if key is not None:
        with wiring().sessions() as session:
            replayed = _replay(session, key)
        if replayed is not None:
            return replayed
    raise error


def _store_answer(session: Session, key: str, status: int, body: object) -> int | None:
    """Store the answer under the key in one statement; None if the key already has one
    (after waiting for a twin in flight to commit, or to roll back and leave the key)."""
    store = STORE_ANSWER[session.get_bind().dialect.name]
    return session.execute(
        store,
        {
            "api_key_id": actor().key_id,
            "key": key,
            "request_fingerprint": _fingerprint(),
            "status_code": status,
            "response_body": body,
            "created_at": wiring().clock(),
        },
    ).scalar()


# PostgreSQL's "try again" answers: a deadlock victim, a serialization failure.
RETRYABLE_SQLSTATES = {"40P01", "40001"}
ATTEMPTS = 3


def _transient(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def run_change(
    change: Callable[[Session, ChangeContext], BaseModel], status: int = 200
) -> Response:
    """Run a state change in one transaction, honouring `Idempotency-Key`.

    The change runs, then its answer is stored under the key in the same transaction: one
    INSERT, unique per API key and key, which waits for a twin in flight. If the key has an
    answer already (a repeat, or a twin that committed first), this change is rolled back
    and that answer replayed. It is replayed too when running the change again fails, in
    whatever way: a repeated release may be refused now because its first run freed the
    licences. Refusals are not stored: they changed nothing, so repeating them is harmless
    and may succeed once the state allows it. A deadlock or serialization failure is
    retried here, never shown as an outage.
    """
    key = request.headers.get("Idempotency-Key")  # its length is checked by ChangeHeaders
    sessions = wiring().sessions
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with sessions.begin() as session:
                body = change(session, change_context()).model_dump(mode="json")
                if key is not None and _store_answer(session, key, status, body) is None:
                    raise _AnsweredBefore  # leaves the block: this change is rolled back
        except OperationalError as error:
            if _transient(error) and attempt < ATTEMPTS:
                continue
            return _answer_before(key, error)
        except Exception as error:
            # A refusal, a twin's committed answer, or any failure of running it again.
            return _answer_before(key, error)
        response = jsonify(body)
        response.status_code = status
        return response
    raise AssertionError("unreachable")  # the loop returns or raises
