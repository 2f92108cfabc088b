"""Events: what each change emits (Stripe's ``previous_attributes`` included).

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Signing and delivering them as webhooks is the transport's job
(:meth:`stripe_sandbox.double.StripeDouble.take_webhook_deliveries`).
"""

from __future__ import annotations

import json

from stripe_sandbox.objects import Event, Json
from stripe_sandbox.state.base import StateBase


class EventLog(StateBase):
    """Records an Event per change unless ``silent`` (previews)."""

    def emit(self, type_: str, obj: Json, previous: Json | None = None) -> None:
        if self.silent:
            return
        req_id, idem = self.request
        evt = Event(
            id=self.new_id("evt"),
            type=type_,
            created=self.now,
            data_object=obj,  # serialisers build fresh dicts: no copy needed here
            previous_attributes=previous,
            request_id=req_id,
            idempotency_key=idem,
        )
        self.events.append(evt)

    def event_json(self, evt: Event) -> Json:
        data: Json = {"object": json.loads(json.dumps(evt.data_object))}
        if evt.previous_attributes is not None:
            data["previous_attributes"] = evt.previous_attributes
        return {
            "id": evt.id,
            "object": "event",
            "api_version": self.api_version,
            "context": None,
            "created": evt.created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0 if evt.delivered else 1,
            "request": {"id": evt.request_id, "idempotency_key": evt.idempotency_key},
            "type": evt.type,
        }
