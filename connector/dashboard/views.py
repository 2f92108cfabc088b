"""The dashboard's pages and buttons: a Flask blueprint at /ops/, rendered server-side.

Every page needs a signed-in session (else a redirect to the sign-in page); every POST,
the sign-in included, carries Flask-WTF's CSRF token; a button that changes something needs
an API key with ops:write and goes through the same service function as the `/v1` route.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from connector.api.context import wiring
from connector.dashboard import auth, reads
from connector.errors import ServiceError
from connector.services import dead_letters
from connector.services.seats import ChangeContext

DASHBOARD_PATH = "/ops"  # the session cookie's path too
bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix=DASHBOARD_PATH,
    template_folder="templates",
    static_folder="static",
)
OPEN_ENDPOINTS = {"dashboard.sign_in", "dashboard.static"}
EXTENSION = "seatsync_dashboard"
# No script, nothing from elsewhere: the pages work offline and nothing can be injected.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")
F = TypeVar("F", bound=Callable[..., Any])
ReplayEvent = Callable[[Session, str, datetime], object]


def _replay_event() -> ReplayEvent:
    replay: ReplayEvent = current_app.extensions[EXTENSION]
    return replay


def _safe_next(target: str | None, fallback: str) -> str:
    """Only a path of the dashboard itself (never another site): an open redirect otherwise."""
    if target and target.startswith("/ops/") and "\\" not in target and "//" not in target:
        return target.removesuffix("?")
    return fallback


@bp.before_request
def _require_session() -> BaseResponse | None:
    if request.endpoint not in OPEN_ENDPOINTS:
        with wiring().sessions() as db:
            signed_in = auth.signed_in(db)
        if signed_in is None:
            auth.end_session()
            here = request.full_path if request.method == "GET" else None
            return redirect(url_for("dashboard.sign_in", next=here), 303)
        g.operator = signed_in
    if request.method == "POST":
        current_app.extensions["csrf"].protect()  # raises CSRFError: a 400 page
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def _context() -> dict[str, Any]:
    return {"operator": g.get("operator"), "now": wiring().clock()}


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"dashboard/{template}", **context), status


@bp.errorhandler(CSRFError)
def _csrf_error(error: CSRFError) -> tuple[str, int]:
    return _page(
        "error.html",
        400,
        title="Form refused",
        message=f"{error.description} Reload the page and try again.",
    )


@bp.errorhandler(ServiceError)
def _service_error(error: ServiceError) -> tuple[str, int]:
    return _page("error.html", error.status, title=error.code, message=error.message)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    return _page("error.html", error.code or 500, title=error.name, message=error.description or "")


def _require_write() -> None:
    if not auth.operator().can_write:
        abort(403, "This button needs an API key with the scope ops:write.")


# --- signing in and out -------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> BaseResponse | tuple[str, int]:
    target = _safe_next(request.values.get("next"), url_for("dashboard.subscriptions"))
    if request.method == "GET":
        return _page("sign_in.html", next=target, error=None)
    with wiring().sessions() as db:
        found = auth.check_secret(db, request.form.get("api_key", ""))
    if found is None:
        error = "Unknown or revoked API key, or one without ops:write or billing:read."
        return _page("sign_in.html", 401, next=target, error=error)
    auth.start_session(found)
    return redirect(target, 303)


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    auth.end_session()
    return redirect(url_for("dashboard.sign_in"), 303)


# --- pages --------------------------------------------------------------------------------


@bp.get("/")
def subscriptions() -> tuple[str, int]:
    query = request.args.get("q", "")[:255]
    page = max(0, min(request.args.get("page", 0, type=int) or 0, 100_000))
    with wiring().sessions() as db:
        found = reads.search_subscriptions(db, query, page)
        return _page("subscriptions.html", nav="subscriptions", found=found)


@bp.get("/subscriptions/<ref>")
def subscription(ref: str) -> tuple[str, int]:
    before = request.args.get("before", type=int)
    with wiring().sessions() as db:
        detail = reads.subscription_detail(db, ref[:255], before, wiring().clock())
        return _page("subscription.html", nav="subscriptions", detail=detail)


@bp.get("/sync")
def sync() -> tuple[str, int]:
    with wiring().sessions() as db:
        health = reads.sync_health(db, wiring().clock())
        return _page("sync.html", nav="sync", health=health)


# --- buttons ------------------------------------------------------------------------------


def _context_of_request() -> ChangeContext:
    return ChangeContext(
        actor=auth.operator().actor, now=wiring().clock(), request_id=g.get("request_id")
    )


@bp.post("/outbox/<int:outbox_id>/retry")
def retry_dead_letter(outbox_id: int) -> BaseResponse:
    """The `/v1/ops/outbox/{id}/retry` change: only a dead-lettered record is retried, so a
    second click (or a replayed form) is refused and changes nothing."""
    _require_write()
    back = _safe_next(request.form.get("next"), url_for("dashboard.sync"))
    try:
        with wiring().sessions.begin() as db:
            dead_letters.retry(db, _context_of_request(), outbox_id)
    except ServiceError as error:
        flash(error.message, "error")
    else:
        flash(f"Outbox record {outbox_id} is sent to Stripe again.", "ok")
    return redirect(back, 303)


@bp.post("/events/<event_id>/replay")
def replay_event(event_id: str) -> BaseResponse:
    """Handle a failed Stripe event again (the webhooks' own retry, given by the app)."""
    _require_write()
    back = _safe_next(request.form.get("next"), url_for("dashboard.sync"))
    if not _EVENT_ID.fullmatch(event_id):
        abort(404, "No such Stripe event.")
    try:
        with wiring().sessions.begin() as db:
            _replay_event()(db, event_id, wiring().clock())
    except ServiceError as error:
        flash(error.message, "error")
    else:
        flash(f"Stripe event {event_id} is handled again shortly.", "ok")
    return redirect(back, 303)
