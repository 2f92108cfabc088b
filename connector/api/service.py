"""Service endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from connector.adapters.migrate import is_current
from connector.api.context import wiring
from connector.api.errors import error_response

bp = Blueprint("service", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    sessions = wiring().sessions
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
            engine = session.get_bind()
        current = is_current(engine)  # type: ignore[arg-type]
    except Exception as error:  # any failure to reach the database means "not ready"
        return error_response(503, "database_unavailable", f"database unreachable: {error}")
    if not current:
        return error_response(
            503, "migrations_pending", "the database is not migrated: run `seatsync db upgrade`"
        )
    return jsonify({"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
