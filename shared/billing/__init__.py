"""Credits and billing (SPEC §4). Money is exact: `Decimal` in code, integer picodollars in SQL."""

from __future__ import annotations

from decimal import Decimal

PICO = Decimal(10) ** 12  # picodollars per dollar: the unit of every money column
MAX_PICO = 2**63 - 1  # BIGINT: a balance may hold up to ~9.2 million USD


def to_pico(amount: Decimal) -> int:
    """USD → picodollars, exactly; an amount finer than a picodollar is a bug upstream of here."""
    scaled = amount * PICO
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of picodollars")
    value = int(scaled)
    if abs(value) > MAX_PICO:
        raise ValueError(f"{amount} is out of range")
    return value


def from_pico(value: int) -> Decimal:
    return Decimal(value) / PICO
