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


def money(value: Decimal) -> str:
    """A decimal string without exponent or trailing zeros: `0.0000315`, `0`, `12.5` — the one
    shape money takes in JSON, headers and messages."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def money_pico(value: int | None) -> str | None:
    """A picodollar column as a money string (None stays None)."""
    return None if value is None else money(from_pico(int(value)))
