"""Usage → exact cost: each token billed once at its own rate (SPEC §4)."""

from __future__ import annotations

from decimal import Decimal

from shared.billing import PICO, money, to_pico
from shared.billing.pricing import cost_of
from shared.catalog import Pricing
from shared.dialects.base import Usage
from shared.dialects.openai_to_openai import openai_usage

D = Decimal


def test_cache_reads_writes_and_reasoning_each_at_their_rate() -> None:
    pricing = Pricing(
        prompt=D("3"), completion=D("15"), cache_read=D("0.3"), cache_write=D("3.75"), reasoning=D("20")
    )
    usage = Usage(
        input_tokens=1000,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        output_tokens=300,
        reasoning_tokens=100,
    )
    # 1000×3 + 2000×0.3 + 500×3.75 + 200×15 + 100×20 = 3000 + 600 + 1875 + 3000 + 2000 = 10475 per million
    assert cost_of(usage, pricing, D("1")) == D("0.010475")
    assert cost_of(usage, pricing, D("1.25")) == D("0.01309375")


def test_missing_cache_and_reasoning_prices_fall_back() -> None:
    pricing = Pricing(prompt=D("2.5"), completion=D("10"))
    usage = Usage(input_tokens=10, cache_read_tokens=10, output_tokens=10, reasoning_tokens=5)
    assert cost_of(usage, pricing, D("1")) == D("0.00015")  # (20×2.5 + 10×10) / 1e6


def test_openai_usage_counts_cached_tokens_once() -> None:
    # OpenAI includes cached tokens in prompt_tokens; they must not be billed twice.
    usage = openai_usage(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 120},
        }
    )
    assert usage == Usage(input_tokens=200, cache_read_tokens=1000, output_tokens=300, reasoning_tokens=120)
    pricing = Pricing(prompt=D("2.5"), completion=D("10"), cache_read=D("1.25"))
    assert cost_of(usage, pricing, D("1")) == D("0.00475")  # 200×2.5 + 1000×1.25 + 300×10


def test_deepseek_cache_hits() -> None:
    usage = openai_usage({"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 60})
    assert (usage.input_tokens, usage.cache_read_tokens) == (40, 60)


def test_free_and_per_request_prices() -> None:
    assert cost_of(Usage(input_tokens=10**6), Pricing(prompt=D(0), completion=D(0)), D("1.25")) == 0
    per_request = Pricing(prompt=D(0), completion=D(0), request=D("0.005"))
    assert cost_of(Usage(), per_request, D("1")) == D("0.005")


def test_money_strings() -> None:
    assert money(D("0.000121875000")) == "0.000121875"
    assert money(D("0E-12")) == "0"
    assert money(D("12.50")) == "12.5"
    assert money(D("3")) == "3"


def test_a_remainder_below_a_picodollar_is_rounded_half_to_even() -> None:
    """Costs are whole picodollars (the ledger's unit). A markup can leave a remainder below one:
    at $0.000001 per million tokens a token costs exactly one picodollar, and the 1.25 markup
    makes it 1.25. The remainder is rounded to the nearest picodollar, a half to the even one
    (banker's rounding: no drift up or down over many requests)."""
    pricing = Pricing(prompt=D("0.000001"), completion=D(0))
    pico = {1: 1, 2: 2, 3: 4, 4: 5, 6: 8, 10: 12, 14: 18}  # 1.25, 2.5, 3.75, 5, 7.5, 12.5, 17.5
    for tokens, expected in pico.items():
        cost = cost_of(Usage(input_tokens=tokens), pricing, D("1.25"))
        assert cost == D(expected) / PICO, tokens
        assert to_pico(cost) == expected  # a whole number of picodollars: the ledger takes it as is
    # Below half a picodollar, nothing; a per-request price is rounded with the rest, once.
    assert cost_of(Usage(input_tokens=1), pricing, D("0.4")) == 0
    per_request = Pricing(prompt=D(0), completion=D(0), request=D("0.0000000000015"))
    assert cost_of(Usage(), per_request, D(1)) == D(2) / PICO
