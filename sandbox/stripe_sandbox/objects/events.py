"""Events as the sandbox records them (rendered by ``StripeState.event_json``).

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from dataclasses import dataclass

from stripe_sandbox.objects.base import Json


@dataclass
class Event:
    id: str
    type: str
    created: int
    data_object: Json
    previous_attributes: Json | None
    request_id: str | None
    idempotency_key: str | None
    delivered: bool = False
