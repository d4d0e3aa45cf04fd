"""`POST /v1/messages` end to end with the official `anthropic` SDK against the gateway on loopback
(SPEC §2.2), for a model of each dialect: Claude (native pass-through to the Anthropic fake),
GPT-4o (translated to the OpenAI fake) and Gemini (translated to the Gemini fake). What came back
is checked through the SDK's own types, and what the upstream received through the fakes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import pytest

from tests.conftest import Account
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply, ToolCall
from tests.harness import GatewayServer

CLAUDE, CLAUDE_NATIVE = "claude-opus-5-5", "claude-opus-5-5"
GPT, GPT_NATIVE = "openai/gpt-4o", "gpt-4o"
GEMINI, GEMINI_NATIVE = "google/gemini-2.5-flash", "gemini-2.5-flash"
MODELS = {"claude": CLAUDE, "openai": GPT, "gemini": GEMINI}
MARKUP = Decimal("1.25")
M = Decimal(1_000_000)
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


@pytest.fixture
def sdk(gateway: GatewayServer, account: Account) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=account.key, max_retries=0, timeout=20) as client:
        yield client


@pytest.fixture
def fakes_by_family(
    anthropic_fake: AnthropicFake, openai_fake: OpenAIFake, gemini_fake: GeminiFake
) -> dict[str, Any]:
    return {"claude": anthropic_fake, "openai": openai_fake, "gemini": gemini_fake}


NATIVE_IDS = {"claude": CLAUDE_NATIVE, "openai": GPT_NATIVE, "gemini": GEMINI_NATIVE}


def script(fakes: dict[str, Any], family: str, *replies: Reply) -> None:
    fakes[family].script(NATIVE_IDS[family], *replies)


def last_body(fakes: dict[str, Any], family: str) -> dict[str, Any]:
    body = fakes[family].requests[-1].body
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("family", ["claude", "openai", "gemini"])
def test_plain_message(sdk: anthropic.Anthropic, fakes_by_family: dict[str, Any], family: str) -> None:
    script(fakes_by_family, family, Reply(text="Paris.", input=30, output=4))
    raw = sdk.messages.with_raw_response.create(
        model=MODELS[family], max_tokens=100, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Paris."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 30 and message.usage.output_tokens == 4
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert Decimal(raw.headers["x-gatewayz-cost"]) > 0
    assert raw.headers["x-ratelimit-limit-requests"]


@pytest.mark.parametrize("family", ["claude", "openai", "gemini"])
def test_streamed_message(sdk: anthropic.Anthropic, fakes_by_family: dict[str, Any], family: str) -> None:
    script(fakes_by_family, family, Reply(text="One two three four.", input=12, output=5, chunks=4))
    with sdk.messages.stream(
        model=MODELS[family], max_tokens=100, messages=[{"role": "user", "content": "Count."}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "One two three four."
    assert len(texts) > 1  # forwarded as it arrived, not buffered
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    assert final.usage.input_tokens == 12  # the real count, from message_delta on translated streams


@pytest.mark.parametrize("family", ["claude", "openai", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(
    sdk: anthropic.Anthropic, fakes_by_family: dict[str, Any], family: str, stream: bool
) -> None:
    call = ToolCall("get_weather", {"city": "Paris"}, id="toolu_01abc")
    script(fakes_by_family, family, Reply(tool_calls=[call]), Reply(text="It is sunny."))
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    kwargs: dict[str, Any] = {"model": MODELS[family], "max_tokens": 200, "tools": [WEATHER]}
    if stream:
        with sdk.messages.stream(messages=ask, **kwargs) as s:
            first = s.get_final_message()
    else:
        first = sdk.messages.create(messages=ask, **kwargs)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}  # type: ignore[union-attr]
    turn = [
        *ask,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 24C"}],  # type: ignore[union-attr]
        },
    ]
    second = sdk.messages.create(messages=turn, **kwargs)
    assert second.content[0].text == "It is sunny."  # type: ignore[union-attr]
    sent = last_body(fakes_by_family, family)
    if family == "openai":
        # A tool result is a tool-role message, never user text (SPEC §11).
        tool_msgs = [m for m in sent["messages"] if m["role"] == "tool"]
        assert tool_msgs == [{"role": "tool", "tool_call_id": use.id, "content": "sunny, 24C"}]  # type: ignore[union-attr]
        assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    elif family == "claude":
        assert sent["messages"][-1]["content"][0]["type"] == "tool_result"
    else:
        parts = [p for c in sent["contents"] for p in c["parts"]]
        assert any("functionResponse" in p for p in parts)


def test_claude_thinking_passes_through(sdk: anthropic.Anthropic, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.script(CLAUDE_NATIVE, Reply(text="42.", reasoning="Let me think.", reasoning_tokens=3))
    message = sdk.messages.create(
        model=CLAUDE,
        max_tokens=2000,
        thinking={"type": "adaptive"},
        messages=[{"role": "user", "content": "Answer?"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature  # type: ignore[union-attr]
    assert anthropic_fake.requests[-1].body["thinking"] == {"type": "adaptive"}


@pytest.mark.parametrize("family", ["openai", "gemini"])
def test_translated_thinking_streams_as_thinking_blocks(
    sdk: anthropic.Anthropic, fakes_by_family: dict[str, Any], family: str
) -> None:
    model = {"openai": "openai/o4-mini", "gemini": GEMINI}[family]
    native = {"openai": "o4-mini", "gemini": GEMINI_NATIVE}[family]
    fakes_by_family[family].script(native, Reply(text="42.", reasoning="Step by step.", reasoning_tokens=4))
    with sdk.messages.stream(
        model=model,
        max_tokens=3000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "Answer?"}],
    ) as stream:
        final = stream.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds == ["thinking", "text"]
    assert final.content[0].thinking == "Step by step."  # type: ignore[union-attr]
    sent = fakes_by_family[family].requests[-1].body
    if family == "openai":
        assert sent["reasoning_effort"] == "low"


@pytest.mark.parametrize("family", ["claude", "openai", "gemini"])
def test_image_input(sdk: anthropic.Anthropic, fakes_by_family: dict[str, Any], family: str) -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is this?"},
    ]
    sdk.messages.create(model=MODELS[family], max_tokens=50, messages=[{"role": "user", "content": content}])
    sent = last_body(fakes_by_family, family)
    if family == "openai":
        parts = sent["messages"][-1]["content"]
        assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    elif family == "claude":
        assert sent["messages"][0]["content"] == content
    else:
        parts = sent["contents"][0]["parts"]
        assert parts[0]["inlineData"] == {"mimeType": "image/png", "data": PNG}


def test_system_blocks_and_stop_sequences_translate(
    sdk: anthropic.Anthropic, openai_fake: OpenAIFake
) -> None:
    sdk.messages.create(
        model=GPT,
        max_tokens=50,
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.2},  # SDK 2.14 speaks API version 2026-10-21, which dropped it
        messages=[{"role": "user", "content": "hi"}],
    )
    sent = openai_fake.requests[-1].body
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][0]["content"][0]["text"] == "Be terse."
    assert sent["stop"] == ["END"] and sent["temperature"] == 0.2 and sent["user"] == "u-1"
    assert sent["max_tokens"] == 50


def test_count_tokens(sdk: anthropic.Anthropic, anthropic_fake: AnthropicFake) -> None:
    messages = [{"role": "user", "content": "How many tokens is this?"}]
    claude = sdk.messages.count_tokens(model=CLAUDE, messages=messages)  # type: ignore[arg-type]
    assert claude.input_tokens > 0
    assert anthropic_fake.requests[-1].path == "/v1/messages/count_tokens"
    assert anthropic_fake.requests[-1].body["model"] == CLAUDE_NATIVE
    raw = sdk.messages.with_raw_response.count_tokens(model=GPT, messages=messages)  # type: ignore[arg-type]
    assert raw.parse().input_tokens > 0
    assert raw.headers["x-gatewayz-estimated"] == "true"


def test_native_billing_counts_cache_tokens_at_their_rates(
    sdk: anthropic.Anthropic, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.script(CLAUDE_NATIVE, Reply(input=100, cached=2000, cache_write=300, output=50))
    raw = sdk.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    # Opus 5.5: $4 in, $20 out, $0.20 cache read, $5 cache write (5 minutes) per million.
    upstream = (100 * Decimal(4) + 2000 * Decimal("0.2") + 300 * Decimal(5) + 50 * Decimal(20)) / M
    assert Decimal(raw.headers["x-gatewayz-cost"]) == upstream * MARKUP
    usage = raw.parse().usage
    assert usage.cache_read_input_tokens == 2000 and usage.cache_creation_input_tokens == 300


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "no-such-model"}, anthropic.NotFoundError),
        ({"max_tokens": 0}, anthropic.BadRequestError),
        ({"messages": []}, anthropic.BadRequestError),
    ],
)
def test_caller_errors_raise_the_sdk_classes(
    sdk: anthropic.Anthropic, kwargs: dict[str, Any], error: type
) -> None:
    args: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    args.update(kwargs)
    with pytest.raises(error) as info:
        sdk.messages.create(**args)
    body = info.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and body["error"]["message"]


def test_bad_key_is_an_authentication_error(gateway: GatewayServer) -> None:
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="gw_live_nope", max_retries=0)
    with bad, pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_x_api_key_header_authenticates(gateway: GatewayServer, account: Account) -> None:
    import httpx

    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers={"x-api-key": account.key, "anthropic-version": "2023-06-01"},
        json={"model": GPT, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"


def test_upstream_failure_fails_over_before_the_first_event(
    sdk: anthropic.Anthropic, anthropic_fake: AnthropicFake, openai_fake: OpenAIFake
) -> None:
    # Opus 5.5 is offered by Anthropic and OpenRouter (an OpenAI-dialect row on the OpenAI fake).
    anthropic_fake.script(CLAUDE_NATIVE, Reply(status=529, error_message="Overloaded"))
    openai_fake.script("anthropic/claude-opus-5.5", Reply(text="Served by the next offer."))
    with sdk.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=50, stream=True, messages=[{"role": "user", "content": "hi"}]
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        headers = response.headers
    assert headers["x-gatewayz-provider"] == "openrouter"
    assert headers["x-gatewayz-attempts"].startswith("anthropic:529:")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "Served by the next offer."


def test_error_after_the_first_event_is_an_error_event(
    sdk: anthropic.Anthropic, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.script(CLAUDE_NATIVE, Reply(text="a b c d e f", chunks=6, stream_error_after=4))
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        sdk.messages.stream(
            model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        for _ in stream.text_stream:
            pass
    assert "Overloaded" in str(info.value)


def test_top_k_goes_where_it_is_taken_and_is_named_where_not(
    sdk: anthropic.Anthropic, openai_fake: OpenAIFake, gemini_fake: GeminiFake
) -> None:
    ask: dict[str, Any] = {
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
        "extra_body": {"top_k": 5},
    }
    raw = sdk.messages.with_raw_response.create(model=GPT, **ask)
    assert "top_k" in raw.headers["x-gatewayz-dropped-params"]  # OpenAI has no top_k
    assert "top_k" not in openai_fake.requests[-1].body
    raw = sdk.messages.with_raw_response.create(model=GEMINI, **ask)
    assert "top_k" not in raw.headers.get("x-gatewayz-dropped-params", "")
    assert gemini_fake.requests[-1].body["generationConfig"]["topK"] == 5


def client_for(gateway: GatewayServer, settings: Any, credits: str = "10", **key: Any) -> anthropic.Anthropic:
    import uuid

    from tests.conftest import provision

    user = provision(settings, f"msg-{uuid.uuid4().hex[:8]}@example.com", Decimal(credits), **key)
    return anthropic.Anthropic(base_url=gateway.url, api_key=user.key, max_retries=0, timeout=20)


HI: dict[str, Any] = {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def test_scope_and_model_refusals_are_permission_errors(
    gateway: GatewayServer, gateway_settings_: Any
) -> None:
    with (
        client_for(gateway, gateway_settings_, scopes=["read"]) as reader,
        pytest.raises(anthropic.PermissionDeniedError),
    ):
        reader.messages.create(model=CLAUDE, **HI)
    only_gpt = client_for(gateway, gateway_settings_, scopes=["inference"], allowed_models=["openai/*"])
    with only_gpt, pytest.raises(anthropic.PermissionDeniedError) as info:
        only_gpt.messages.create(model=CLAUDE, **HI)
    assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


def test_rate_limit_is_a_rate_limit_error_with_retry_after(
    gateway: GatewayServer, gateway_settings_: Any
) -> None:
    limited = client_for(
        gateway, gateway_settings_, scopes=["inference"], rate_limits={"requests_per_minute": 1}
    )
    with limited:
        limited.messages.create(model=GPT, **HI)
        with pytest.raises(anthropic.RateLimitError) as info:
            limited.messages.create(model=GPT, **HI)
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_insufficient_credits_is_a_402_billing_error(
    gateway: GatewayServer, gateway_settings_: Any, anthropic_fake: AnthropicFake
) -> None:
    poor = client_for(gateway, gateway_settings_, credits="0.0001")
    with poor, pytest.raises(anthropic.APIStatusError) as info:
        poor.messages.create(model=CLAUDE, max_tokens=100_000, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 402
    assert info.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert not anthropic_fake.requests  # refused before any upstream call


def test_models_fallbacks_and_provider_preferences_are_consumed(
    sdk: anthropic.Anthropic, anthropic_fake: AnthropicFake, openai_fake: OpenAIFake
) -> None:
    # `provider.only` keeps Claude off its native offer: OpenRouter serves it through the pivot.
    raw = sdk.messages.with_raw_response.create(
        model=CLAUDE, **HI, extra_body={"provider": {"only": ["openrouter"]}}
    )
    assert raw.headers["x-gatewayz-provider"] == "openrouter"
    assert "provider" not in openai_fake.requests[-1].body  # the gateway's own field, never sent
    # Every offer of the first model fails: the `models` fallback answers.
    anthropic_fake.script(CLAUDE_NATIVE, Reply(status=500))
    openai_fake.script("anthropic/claude-opus-5.5", Reply(status=503))
    raw = sdk.messages.with_raw_response.create(model=CLAUDE, **HI, extra_body={"models": [GPT]})
    assert raw.headers["x-gatewayz-model"] == GPT
    assert "models" not in openai_fake.requests[-1].body
    assert [a.split(":")[0] for a in raw.headers["x-gatewayz-attempts"].split(", ")] == [
        "anthropic",
        "openrouter",
        "openai",
    ]
