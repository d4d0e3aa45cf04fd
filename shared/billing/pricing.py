"""Usage → exact cost (SPEC §4): catalog prices per million tokens × the operator's markup.

Each token is billed once at its own rate: uncached input at the prompt price, cache reads and
writes at theirs (falling back to the prompt price when the catalog has none), reasoning at the
reasoning price (falling back to completion). Decimal throughout; never a float.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from shared.catalog import MILLION, Pricing
from shared.dialects.base import Usage

# Costs are kept to a picodollar (the ledger's unit): exact for every price × token count the
# catalog can express; a markup can leave a remainder below one, rounded to the nearest picodollar,
# a half to the even one (no drift either way over many requests).
QUANTUM = Decimal("0.000000000001")


def cost_of(
    usage: Usage, pricing: Pricing, markup: Decimal, *, requests: int = 1, images: int = 0
) -> Decimal:
    cache_read = pricing.cache_read if pricing.cache_read is not None else pricing.prompt
    cache_write = pricing.cache_write if pricing.cache_write is not None else pricing.prompt
    reasoning = pricing.reasoning if pricing.reasoning is not None else pricing.completion
    per_million = (
        usage.input_tokens * pricing.prompt
        + usage.cache_read_tokens * cache_read
        + usage.cache_write_tokens * cache_write
        + (usage.output_tokens - usage.reasoning_tokens) * pricing.completion
        + usage.reasoning_tokens * reasoning
    )
    upstream = per_million / MILLION + pricing.request * requests + pricing.image * images
    return (upstream * markup).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
