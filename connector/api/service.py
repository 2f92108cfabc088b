"""Service endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from flask import Response, current_app, jsonify
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import text

from connector.adapters.metrics import ScrapeCollector
from connector.adapters.migrate import is_current
from connector.api.context import wiring
from connector.api.errors import error_response
from connector.api.schemas import ErrorBody, Health

log = logging.getLogger(__name__)
METRICS_EXTENSION = "seatsync_metrics"
bp = APIBlueprint("service", __name__, abp_tags=[Tag(name="service", description="probes")])


@bp.get("/healthz", responses={200: Health})
def healthz() -> Response:
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz", responses={200: Health, 503: ErrorBody})
def readyz() -> Response:
    """The database is reachable and migrated to the newest schema."""
    sessions = wiring().sessions
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
            engine = session.get_bind()
        current = is_current(engine)  # type: ignore[arg-type]
    except Exception as error:  # any failure to reach the database means "not ready"
        # The driver's message names hosts and ports: logged, never shown to a caller.
        log.warning("readiness check failed: %s", error)
        return error_response(503, "database_unavailable", "the database cannot be reached")
    if not current:
        return error_response(
            503, "migrations_pending", "the database is not migrated: run `seatsync db upgrade`"
        )
    return jsonify({"status": "ready"})


@bp.get("/metrics", responses={200: {"description": "Prometheus text format"}})
def metrics() -> Response:
    """Prometheus metrics (text format 0.0.4): this process's counters and histograms, and
    gauges of the sync's state read from the database now (the same from every process)."""
    collector = current_app.extensions.get(METRICS_EXTENSION)
    if collector is None:  # one per app: it reads the app's database with the app's clock
        collector = ScrapeCollector(wiring().sessions, wiring().clock)
        current_app.extensions[METRICS_EXTENSION] = collector
    # `content_type`, not `mimetype`: Flask would append a second charset to the latter.
    return Response(generate_latest(collector), content_type=CONTENT_TYPE_PLAIN_0_0_4)
