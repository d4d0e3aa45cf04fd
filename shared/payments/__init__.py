"""Money in (SPEC §4-§6): Stripe Checkout for top-ups and plans, the webhook that applies each
event exactly once on the ledger (`webhook`), refunds and disputes as claw-backs and freezes
(`topups`), plan subscriptions (`subscriptions`). Imported by the billing and webhooks functions
only: the chat hot path never loads it, nor the `stripe` library."""
