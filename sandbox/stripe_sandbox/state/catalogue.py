"""The catalogue: products and recurring prices.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from stripe_sandbox.objects import Price, Product, price_json, product_json
from stripe_sandbox.state.events import EventLog


class Catalogue(EventLog):
    """Creates products and prices."""

    def create_product(self, name: str, metadata: dict[str, str]) -> Product:
        p = Product(id=self.new_id("prod"), name=name, created=self.now, metadata=metadata)
        self.books.products[p.id] = p
        self.emit("product.created", product_json(p))
        return p

    def create_price(
        self,
        *,
        product: str,
        currency: str,
        unit_amount: int,
        interval: str,
        interval_count: int,
        metadata: dict[str, str],
        nickname: str | None,
        lookup_key: str | None,
    ) -> Price:
        p = Price(
            id=self.new_id("price"),
            product=product,
            currency=currency,
            unit_amount=unit_amount,
            interval=interval,
            interval_count=interval_count,
            created=self.now,
            metadata=metadata,
            nickname=nickname,
            lookup_key=lookup_key,
        )
        self.books.prices[p.id] = p
        self.emit("price.created", price_json(p))
        return p
