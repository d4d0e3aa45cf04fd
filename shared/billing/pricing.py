"""Usage → exact cost (SPEC §4): catalog prices per million tokens × the operator's markup.

Each token is billed once at its own rate: uncached input at the prompt price, cache reads and
writes at theirs (falling back to the prompt price when the catalog has none; 1-hour cache writes
at their own rate where the catalog has one), reasoning at the reasoning price (falling back to
completion). A model priced by prompt length bills the whole request at the tier its prompt falls
in. Decimal throughout; never a float.
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
    rates = pricing.rates_for(usage.prompt_tokens)
    cache_read = rates.cache_read if rates.cache_read is not None else rates.prompt
    cache_write = rates.cache_write if rates.cache_write is not None else rates.prompt
    cache_write_1h = rates.cache_write_1h if rates.cache_write_1h is not None else cache_write
    reasoning = rates.reasoning if rates.reasoning is not None else rates.completion
    written_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    per_million = (
        usage.input_tokens * rates.prompt
        + usage.cache_read_tokens * cache_read
        + (usage.cache_write_tokens - written_1h) * cache_write
        + written_1h * cache_write_1h
        + (usage.output_tokens - usage.reasoning_tokens) * rates.completion
        + usage.reasoning_tokens * reasoning
    )
    upstream = per_million / MILLION + pricing.request * requests + pricing.image * images
    if usage.images and pricing.images:
        upstream += usage.images * pricing.image_price(*usage.image_kind)
    return (upstream * markup).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
