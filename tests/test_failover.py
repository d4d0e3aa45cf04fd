"""Failover (SPEC §3) and streaming failure semantics (SPEC §2.1), through the official SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Account
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply

MODEL = "openai/gpt-4o"  # offered by openai (native "gpt-4o") then openrouter ("openai/gpt-4o")
FIRST, SECOND = "gpt-4o", "openai/gpt-4o"
ASK = [{"role": "user", "content": "hi"}]


def attempts(raw: Any) -> list[str]:
    return [a.strip() for a in raw.headers["x-gatewayz-attempts"].split(",")]


def test_503_fails_over_to_the_second_offer(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(status=503))
    openai_fake.script(SECOND, Reply(text="served by the second"))
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    assert raw.parse().choices[0].message.content == "served by the second"
    assert raw.headers["x-gatewayz-provider"] == "openrouter"
    chain = attempts(raw)
    assert chain[0].startswith("openai:503:") and chain[1].startswith("openrouter:200:")


@pytest.mark.parametrize("status", [401, 402, 403, 408, 429, 500, 502, 504])
def test_provider_side_errors_fail_over(client: Any, openai_fake: OpenAIFake, status: int) -> None:
    openai_fake.script(FIRST, Reply(status=status))
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    assert raw.headers["x-gatewayz-provider"] == "openrouter"


@pytest.mark.parametrize(
    ("status", "exc"),
    [(400, openai.BadRequestError), (404, openai.NotFoundError), (422, openai.UnprocessableEntityError)],
)
def test_caller_errors_do_not_fail_over(
    client: Any, openai_fake: OpenAIFake, status: int, exc: type[Exception]
) -> None:
    openai_fake.script(FIRST, Reply(status=status, error_message="your request is wrong"))
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=MODEL, messages=ASK)
    assert "your request is wrong" in info.value.message  # type: ignore[attr-defined]
    assert len(openai_fake.requests) == 1  # the second offer was never called


def test_upstream_401_is_never_shown_as_the_callers_401(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(status=401))
    openai_fake.script(SECOND, Reply(status=401))
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=ASK)
    assert info.value.status_code == 502  # the caller's key is fine; the providers' are not
    assert "sk-test" not in info.value.response.text


def test_slow_upstream_times_out_and_fails_over(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(delay=3.0))  # first-byte timeout in tests is 2 s
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    assert raw.headers["x-gatewayz-provider"] == "openrouter"
    assert attempts(raw)[0].startswith("openai:timeout:")
    assert time.monotonic() - started < 3.0


def test_every_offer_timing_out_is_504(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(delay=3.0))
    openai_fake.script(SECOND, Reply(delay=3.0))
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=ASK)
    assert info.value.status_code == 504


def test_short_retry_after_retries_the_same_offer(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(status=429, retry_after=0), Reply(text="after waiting"))
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    assert raw.parse().choices[0].message.content == "after waiting"
    assert raw.headers["x-gatewayz-provider"] == "openai"
    chain = attempts(raw)
    assert chain[0].startswith("openai:429") and chain[1].startswith("openai:200")


def test_model_fallbacks_after_every_offer_failed(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(status=500))
    openai_fake.script(SECOND, Reply(status=500))
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=ASK, extra_body={"models": ["meta-llama/llama-3.3-70b-instruct"]}
    )
    assert raw.headers["x-gatewayz-model"] == "meta-llama/llama-3.3-70b-instruct"


def test_provider_order_only_ignore_and_no_fallbacks(client: Any, openai_fake: OpenAIFake) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=ASK, extra_body={"provider": {"order": ["openrouter", "openai"]}}
    )
    assert raw.headers["x-gatewayz-provider"] == "openrouter"
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=ASK, extra_body={"provider": {"ignore": ["openai"]}}
    )
    assert raw.headers["x-gatewayz-provider"] == "openrouter"
    openai_fake.reset()
    openai_fake.script(FIRST, Reply(status=503))
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            extra_body={"provider": {"only": ["openai", "openrouter"], "allow_fallbacks": False}},
        )
    assert info.value.status_code == 502
    assert len(openai_fake.requests) == 1


def test_unknown_provider_preference_is_400(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=ASK, extra_body={"provider": {"only": ["nope"]}})
    assert "nope" in info.value.message


def test_max_price_excludes_offers_and_says_why(client: Any) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model=MODEL, messages=ASK, extra_body={"provider": {"max_price": {"prompt": 1}}}
        )
    assert info.value.status_code == 503
    assert "max_price" in info.value.message


def test_price_sort_prefers_the_cheapest_offer(client: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="meta-llama/llama-3.3-70b-instruct", messages=ASK
    )
    from shared.catalog import build_catalog

    catalog = build_catalog()
    cheapest = min(
        catalog.offers["meta-llama/llama-3.3-70b-instruct"],
        key=lambda o: o.pricing.prompt + o.pricing.completion,
    )
    assert raw.headers["x-gatewayz-provider"] == cheapest.provider_id


def test_stream_fails_over_before_the_first_chunk(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(status=503))
    openai_fake.script(SECOND, Reply(text="streamed by the second", chunks=3))
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=ASK, stream=True
    ) as resp:
        assert resp.headers["x-gatewayz-provider"] == "openrouter"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == "streamed by the second"


def test_stream_that_dies_before_any_chunk_fails_over(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(FIRST, Reply(fail_after=0))
    stream = client.chat.completions.create(model=MODEL, messages=ASK, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == Reply().text


def test_mid_stream_failure_ends_with_an_error_frame(
    gateway: Any, account: Account, openai_fake: OpenAIFake
) -> None:
    openai_fake.script(FIRST, Reply(text="a b c d e f", chunks=6, fail_after=3))
    frames = sse_frames(gateway, account, {"model": MODEL, "messages": ASK, "stream": True})
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["type"] == "upstream_error" and error["message"].startswith("openai: stream")
    contents = [json.loads(f)["choices"][0]["delta"].get("content") for f in frames[:-2]]
    assert any(contents)  # the caller got the first chunks, then the error: no silent truncation


def test_in_stream_error_event_becomes_an_error_frame(
    gateway: Any, account: Account, openai_fake: OpenAIFake
) -> None:
    openai_fake.script(FIRST, Reply(text="a b c d", chunks=4, stream_error_after=2))
    frames = sse_frames(gateway, account, {"model": MODEL, "messages": ASK, "stream": True})
    assert frames[-1] == "[DONE]"
    assert "fake mid-stream failure" in json.loads(frames[-2])["error"]["message"]


def test_client_disconnect_closes_the_upstream(
    gateway: Any, account: Account, openai_fake: OpenAIFake
) -> None:
    openai_fake.script(FIRST, Reply(text="x" * 50, chunks=50, chunk_delay=0.1))
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": MODEL, "messages": ASK, "stream": True},
        headers={"authorization": f"Bearer {account.key}"},
    ) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                break  # read one event, then hang up
    deadline = time.monotonic() + 3
    while openai_fake.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert openai_fake.open_streams == 0
    assert openai_fake.requests[-1].completed is False  # the upstream never finished writing


def sse_frames(gateway: Any, account: Account, body: dict[str, Any]) -> list[str]:
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {account.key}"}
    )
    assert resp.status_code == 200
    return [line[len("data: ") :] for line in resp.text.split("\n") if line.startswith("data: ")]
