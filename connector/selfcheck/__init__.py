"""`seatsync selfcheck`: proof against real Stripe that it bills what the connector predicts.

With a Stripe test-mode key it creates a test clock per billing mode (classic, flexible),
customers on them, a product with a yearly (120.00) and a monthly (10.00) per-seat price and
a subscription per case; registers them with the connector running in process on a
throw-away SQLite database; drives BILLING_RULES section 4's worked examples and the rare
paths by buying and releasing seats through the connector's HTTP API, advancing the test
clocks and draining the sync; and compares, step by step, the rules, the connector's quote
and ledger, and what Stripe invoiced (`runner`). Everything it created is deleted at the
end, also when it fails.

`command.selfcheck` is the click command; only `connector.cli` imports this package, and
the command imports the rest when it runs (so the CLI starts fast).
"""
