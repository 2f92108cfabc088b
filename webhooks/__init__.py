"""Stripe webhooks (signed events → stored → de-duplicated → handled). Not built yet: the
sync reads Stripe's state itself (renewals, reconcile); webhooks will make it react sooner."""
