"""The declarative parameter engine (STYLE §3)."""

from __future__ import annotations

import pytest

from shared.providers.quirks import Quirks


def test_drop_rename_defaults_clamp_roles() -> None:
    q = Quirks.parse(
        {
            "drop": ["logit_bias"],
            "rename": {"seed": "random_seed"},
            "defaults": {"max_tokens": 256},
            "clamp": {"temperature": [0, 1]},
            "roles": {"developer": "system"},
        },
        "test",
    )
    body = {
        "logit_bias": {"1": 2},
        "seed": 7,
        "temperature": 1.7,
        "messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "y"}],
    }
    dropped: list[str] = []
    adjusted: list[str] = []
    q.apply(body, dropped, adjusted)
    assert body == {
        "random_seed": 7,
        "temperature": 1,
        "max_tokens": 256,
        "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
    }
    assert dropped == ["logit_bias"] and adjusted == ["temperature"]


def test_defaults_do_not_override_the_caller() -> None:
    body = {"max_tokens": 10}
    Quirks.parse({"defaults": {"max_tokens": 256}}, "t").apply(body, [], [])
    assert body == {"max_tokens": 10}


def test_clamp_leaves_values_in_range_and_non_numbers_alone() -> None:
    q = Quirks.parse({"clamp": {"temperature": [0, 1]}}, "t")
    for value in (0.5, None, True):
        body = {"temperature": value}
        adjusted: list[str] = []
        q.apply(body, [], adjusted)
        assert body == {"temperature": value} and adjusted == []


def test_merge_prefers_the_more_specific_row() -> None:
    provider = Quirks.parse({"drop": ["a"], "rename": {"x": "y"}, "clamp": {"t": [0, 2]}}, "p")
    offer = Quirks.parse({"drop": ["b"], "rename": {"x": "z"}, "clamp": {"t": [0, 1]}}, "o")
    merged = provider.merged(offer)
    assert merged.drop == {"a", "b"} and merged.rename["x"] == "z" and merged.clamp["t"] == (0, 1)
    assert provider.merged(Quirks()) is provider


@pytest.mark.parametrize("raw", [{"shout": []}, {"clamp": {"t": [2, 1]}}, {"clamp": {"t": 5}}])
def test_malformed_quirks_are_rejected(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Quirks.parse(raw, "t")
