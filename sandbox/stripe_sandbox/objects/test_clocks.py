"""Test clocks (``/v1/test_helpers/test_clocks``) and their JSON.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from dataclasses import dataclass

from stripe_sandbox.objects.base import Json, Tracked

# Stripe deletes a test clock by itself 30 days after creating it.
TEST_CLOCK_LIFETIME = 30 * 86400


@dataclass
class TestClock(Tracked):
    __test__ = False  # not a pytest test class

    id: str
    created: int
    frozen_time: int
    name: str | None
    deletes_after: int
    status: str = "ready"  # ready | advancing | internal_failure


def clock_json(c: TestClock, *, advancing_to: int | None = None) -> Json:
    """The clock; ``advancing_to`` renders it as the advance call answers (still advancing)."""
    status_details: Json = {}
    if advancing_to is not None:
        status_details = {"advancing": {"target_frozen_time": advancing_to}}
    return {
        "id": c.id,
        "object": "test_helpers.test_clock",
        "created": c.created,
        "deletes_after": c.deletes_after,
        "frozen_time": c.frozen_time,
        "livemode": False,
        "name": c.name,
        "status": "advancing" if advancing_to is not None else c.status,
        "status_details": status_details,
    }
