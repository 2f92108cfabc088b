"""A reduced run of bench/reconcile_scale.py on both databases: the reconcile lists Stripe
once a page of 100 and finds exactly the drift the benchmark made. Nothing here is timed."""

from __future__ import annotations

import math

from bench.reconcile_scale import run_benchmark
from tests.helpers import Database

SUBSCRIPTIONS = 300


def test_the_reconcile_lists_a_page_of_100_at_a_time_and_finds_exactly_the_drift(
    database: Database,
) -> None:
    result = run_benchmark(database.url, SUBSCRIPTIONS, 3, in_process=True, traced_run=False)
    [run] = result.runs
    pages = math.ceil(SUBSCRIPTIONS / 100)
    assert pages <= run.list_calls <= pages * 1.05
    assert run.report.checked == SUBSCRIPTIONS and run.report.missing_in_stripe == 0
    assert run.report.drift_found == 3 and len(result.drifted) == 3
    assert result.drift_open == {(s, "quantity") for s in result.drifted}
    assert result.drift_exact
