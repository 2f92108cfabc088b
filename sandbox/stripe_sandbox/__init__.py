"""stripe_sandbox: a stateful Stripe double for seatsync's tests and demos.

A TEST AND DEMO TOOL - it never contacts Stripe and is never used with real
money.  It implements the parts of Stripe's v1 HTTP API the connector uses
(customers, prices, subscriptions with prorations, invoices, events) with a
movable clock, so the connector can be exercised end to end without a Stripe
account.  Entry points:

- :class:`stripe_sandbox.double.StripeDouble` - the double itself;
- :func:`stripe_sandbox.responses_adapter.install` - serve it to stripe-python
  through ``responses`` in tests;
- :func:`stripe_sandbox.server.create_sandbox_app` / ``serve`` - serve it over
  HTTP on loopback (the ``stripe-sandbox`` command);
- ``seatsync-demo`` (:mod:`stripe_sandbox.demo`) - the connector against a local
  sandbox, the one module here that imports the connector.

The connector itself must never import this package (import-linter enforces it).
"""

from stripe_sandbox.double import Fault, RecordedRequest, Response, StripeDouble
from stripe_sandbox.form import decode_form

__all__ = ["Fault", "RecordedRequest", "Response", "StripeDouble", "decode_form"]
