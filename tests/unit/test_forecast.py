"""When the pipeline sends the reservation alongside the admission (shared/limits/forecast.py):
only when the key's last admission here left room for two more such requests, recently, with at
most half the user's concurrency in flight here; never after a refusal until an admission leaves
room again."""

from __future__ import annotations

from shared.hot.gcra import Decision, Rule, RuleState
from shared.limits.forecast import FRESH_S, Forecast

RPM = Rule("rl:key:k:rpm", 60, 60_000, 1, name="key requests_per_minute")
TPM = Rule("rl:key:k:tpm", 10_000, 60_000, 100, kind="tokens", name="key tokens_per_minute")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def decision(requests_left: int, tokens_left: int, allowed: bool = True) -> Decision:
    return Decision(allowed, 0, (RuleState(RPM, requests_left, 0), RuleState(TPM, tokens_left, 0)))


def test_nothing_is_forecast_for_a_key_never_admitted_here() -> None:
    assert not Forecast().admits("k", "u", 1, 100, None)


def test_room_for_two_more_requests_and_their_tokens_is_needed() -> None:
    forecast = Forecast()
    forecast.admitted("k", "u", decision(2, 200))
    assert forecast.admits("k", "u", 1, 100, None)
    assert not forecast.admits("k", "u", 2, 100, None)  # a fan-out of 2 calls needs room for 4
    assert not forecast.admits("k", "u", 1, 101, None)
    forecast.admitted("k", "u", decision(1, 10_000))
    assert not forecast.admits("k", "u", 1, 100, None)


def test_a_refusal_stops_the_forecast_until_an_admission_leaves_room() -> None:
    forecast = Forecast()
    forecast.admitted("k", "u", decision(50, 10_000))
    forecast.admitted("k", "u", decision(0, 0, allowed=False))
    assert not forecast.admits("k", "u", 1, 100, None)
    forecast.admitted("k", "u", decision(50, 10_000))
    assert forecast.admits("k", "u", 1, 100, None)


def test_an_old_admission_says_nothing() -> None:
    clock = Clock()
    forecast = Forecast(clock)
    forecast.admitted("k", "u", decision(50, 10_000))
    clock.now += FRESH_S + 0.1
    assert not forecast.admits("k", "u", 1, 100, None)


def test_at_most_half_the_users_concurrency_may_be_in_flight_here() -> None:
    forecast = Forecast()
    forecast.admitted("k", "u", decision(50, 10_000))  # one in flight
    assert forecast.admits("k", "u", 1, 100, 4)  # 1 + 1 <= 2
    assert not forecast.admits("k", "u", 1, 100, 3)
    assert not forecast.admits("k", "u", 1, 100, 1)  # one concurrent request: never
    forecast.finished("u")
    assert forecast.admits("k", "u", 1, 100, 2)
    forecast.finished("u")  # more ends than starts never counts below zero
    assert forecast.admits("k", "u", 1, 100, 2)
