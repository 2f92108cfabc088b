"""HTTP routing of the sandbox double: Stripe's v1 paths, parameters and shapes.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Each handler validates its parameters the way Stripe does (unknown parameter,
missing parameter, non-integer -> 400; unknown object in the path -> 404) and
delegates the billing logic to :mod:`stripe_sandbox.state`.  One module per
resource registers its handlers on the table in :mod:`.registry`; no two
resources' path patterns overlap, so the order they are imported in does not matter.
"""

# Imported for their @route registrations.
from stripe_sandbox.routes import (  # noqa: F401
    catalogue,
    customers,
    events,
    invoices,
    subscriptions,
    test_clocks,
)
from stripe_sandbox.routes.registry import dispatch

__all__ = ["dispatch"]
