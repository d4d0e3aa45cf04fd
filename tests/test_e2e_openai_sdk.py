"""End to end with the official `openai` SDK against the gateway on loopback (SPEC §2.1).

If the real SDK cannot use a feature through Gatewayz, the feature does not work: these tests
drive every path the way a caller would and check what came back, and what the upstream received.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.conftest import Account, provision
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply, ToolCall
from tests.store.support import query

MODEL = "openai/gpt-4o"
NATIVE = "gpt-4o"


def test_plain_completion_through_the_sdk(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(NATIVE, Reply(text="Paris is the capital.", input=20, output=6))
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris is the capital."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.usage.prompt_tokens == 20 and completion.usage.completion_tokens == 6
    # usage.cost = (20 × 2.5 + 6 × 10) / 1e6 × 1.25 markup
    expected = (
        (Decimal(20) * Decimal("2.5") + Decimal(6) * Decimal(10)) / Decimal(1_000_000) * Decimal("1.25")
    )
    body = json.loads(raw.http_response.content)
    assert Decimal(str(body["usage"]["cost"])) == expected
    assert Decimal(raw.headers["x-gatewayz-cost"]) == expected
    assert raw.headers["x-gatewayz-provider"] == "openai"
    assert raw.headers["x-gatewayz-model"] == MODEL
    assert raw.headers["x-request-id"].startswith("req_")
    assert float(raw.headers["x-gatewayz-overhead-ms"]) >= 0
    sent = openai_fake.requests[-1]
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-openai"
    assert sent.body["model"] == NATIVE  # the native id, not the gateway's


def test_bare_alias_resolves(client: Any, openai_fake: OpenAIFake) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert completion.model == MODEL


def test_caller_request_id_is_echoed(client: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "my-trace-42"},
    )
    assert raw.headers["x-request-id"] == "my-trace-42"


def test_stream_without_usage_forces_upstream_usage_but_hides_it(
    client: Any, openai_fake: OpenAIFake
) -> None:
    openai_fake.script(NATIVE, Reply(text="one two three four", chunks=4))
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "count"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert all(c.usage is None for c in chunks)  # the caller did not ask for usage
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert openai_fake.requests[-1].body["stream_options"] == {"include_usage": True}  # but we billed it


def test_stream_with_usage_carries_cost(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(NATIVE, Reply(text="abc", input=100, cached=40, output=10))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.prompt_tokens == 140 and usage.prompt_tokens_details.cached_tokens == 40
    expected = (
        (Decimal(100) * Decimal("2.5") + Decimal(40) * Decimal("1.25") + Decimal(10) * Decimal(10))
        / Decimal(1_000_000)
        * Decimal("1.25")
    )
    assert Decimal(str(usage.model_extra["cost"])) == expected


def test_tool_call_round_trip(client: Any, openai_fake: OpenAIFake) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    openai_fake.script(NATIVE, Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")]))
    first = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        tool_choice="auto",
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    openai_fake.script(NATIVE, Reply(text="It is sunny in Paris."))
    second = client.chat.completions.create(
        model=MODEL,
        tools=tools,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
        ],
    )
    assert second.choices[0].message.content == "It is sunny in Paris."
    sent = openai_fake.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'}


def test_streamed_tool_call_deltas(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(NATIVE, Reply(tool_calls=[ToolCall("lookup", {"q": "gateway", "limit": 3})], chunks=4))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "search"}],
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        stream=True,
    )
    args = ""
    name = None
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = call.function.name or name
            args += call.function.arguments or ""
    assert name == "lookup" and json.loads(args) == {"q": "gateway", "limit": 3}


def test_json_schema_response_format(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(NATIVE, Reply(text='{"name": "Ada", "age": 36}'))
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Who?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )
    assert json.loads(completion.choices[0].message.content) == {"name": "Ada", "age": 36}
    assert openai_fake.requests[-1].body["response_format"]["json_schema"]["schema"] == schema


def test_n_two_native(client: Any, openai_fake: OpenAIFake) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert openai_fake.requests[-1].body["n"] == 2  # OpenAI takes n natively: one upstream call
    assert len(openai_fake.requests) == 1


def test_n_two_fans_out_where_the_provider_has_no_n(client: Any, openai_fake: OpenAIFake) -> None:
    # Groq rejects n > 1 (its fake enforces it): the gateway makes two calls and merges them.
    openai_fake.default = Reply(text="choice", input=10, output=5)
    completion = client.chat.completions.create(
        model="meta-llama/llama-3.3-70b-instruct",
        messages=[{"role": "user", "content": "hi"}],
        n=2,
        extra_body={"provider": {"only": ["groq"]}},
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.usage.prompt_tokens == 20 and completion.usage.completion_tokens == 10
    groq_calls = [r for r in openai_fake.requests if r.path.startswith("/groq/")]
    assert len(groq_calls) == 2 and all("n" not in r.body for r in groq_calls)


def test_logprobs_developer_role_and_reasoning_effort_reach_openai(
    client: Any, openai_fake: OpenAIFake
) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "developer", "content": "be terse"}, {"role": "user", "content": "hi"}],
        logprobs=True,
        top_logprobs=2,
        seed=7,
    )
    assert completion.choices[0].logprobs.content[0].token == "Hello"
    sent = openai_fake.requests[-1].body
    assert sent["messages"][0]["role"] == "developer"
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2 and sent["seed"] == 7


def test_dropped_params_are_named(client: Any, openai_fake: OpenAIFake) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="meta-llama/llama-3.3-70b-instruct",
        messages=[{"role": "developer", "content": "terse"}, {"role": "user", "content": "hi"}],
        logprobs=True,
        logit_bias={"50256": -100},
        extra_body={"provider": {"only": ["groq"]}},
    )
    dropped = {p.strip() for p in raw.headers["x-gatewayz-dropped-params"].split(",")}
    assert {"logprobs", "logit_bias"} <= dropped
    sent = openai_fake.requests[-1].body
    assert "logprobs" not in sent and "logit_bias" not in sent
    assert sent["messages"][0]["role"] == "system"  # Groq has no developer role
    assert raw.headers["x-gatewayz-adjusted-params"] == "developer_role"


def test_gateway_fields_never_reach_the_upstream(client: Any, openai_fake: OpenAIFake) -> None:
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"models": ["anthropic/claude-sonnet-4"], "provider": {"sort": "price"}},
    )
    sent = openai_fake.requests[-1].body
    assert "models" not in sent and "provider" not in sent


def test_unknown_fields_pass_through_to_openai_dialect(client: Any, openai_fake: OpenAIFake) -> None:
    # The fake rejects unknown fields like OpenAI does: the caller gets OpenAI's own 400.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"frobnicate": True}
        )
    assert "frobnicate" in info.value.message
    # A field OpenAI knows goes through untouched.
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], store=False)
    assert openai_fake.requests[-1].body["store"] is False


def test_legacy_completions(client: Any, openai_fake: OpenAIFake) -> None:
    openai_fake.script(NATIVE, Reply(text="a poem"))
    completion = client.completions.create(model=MODEL, prompt="Write a poem", max_tokens=20)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "a poem"
    openai_fake.script(NATIVE, Reply(text="streamed poem", chunks=3))
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(model=MODEL, prompt="x", stream=True)
        if c.choices
    )
    assert text == "streamed poem"


@pytest.mark.parametrize(
    ("kwargs", "exc", "status"),
    [
        ({"messages": []}, openai.BadRequestError, 400),
        ({"messages": [{"role": "wizard", "content": "x"}]}, openai.BadRequestError, 400),
        ({"temperature": 3}, openai.BadRequestError, 400),
        ({"model": "nope/not-a-model"}, openai.NotFoundError, 404),
    ],
)
def test_sdk_raises_the_right_exception(
    client: Any, kwargs: dict[str, Any], exc: type[Exception], status: int
) -> None:
    args: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(exc) as info:
        client.chat.completions.create(**args)
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert info.value.response.headers["x-request-id"]  # type: ignore[attr-defined]


def test_bad_and_missing_keys_are_401(gateway: Any) -> None:
    bad = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    import httpx

    resp = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert resp.json()["error"]["request_id"] == resp.headers["x-request-id"]


def test_upstream_429_everywhere_is_a_429_with_retry_after(client: Any, openai_fake: OpenAIFake) -> None:
    for _ in range(4):
        openai_fake.script(NATIVE, Reply(status=429, retry_after=30))
        openai_fake.script("openai/gpt-4o", Reply(status=429, retry_after=20))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.response.headers["retry-after"] == "20"


def test_malformed_json_body_is_400(gateway: Any, account: Account) -> None:
    import httpx

    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {account.key}", "content-type": "application/json"},
    )
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["error"]["message"]


def test_models_list_and_retrieve(client: Any) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert MODEL in ids and "anthropic/claude-sonnet-4" in ids
    one = client.models.retrieve(MODEL)
    assert one.id == MODEL and one.owned_by == "openai"
    assert one.model_extra["pricing"]["prompt"] == "3.125"  # 2.5 × 1.25 markup, per million tokens
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope/nothing")


def test_a_local_model_is_named_as_the_caller_asked(
    client: Any, gateway: Any, openai_fake: OpenAIFake
) -> None:
    """`local:<id>` reaches a self-hosted server with the native id, and the answer names the
    model as it was asked for (an id that can be sent again), in the header, the body and the
    request record."""
    raw = client.chat.completions.with_raw_response.create(
        model="local:my-org/my-model:7b", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-gatewayz-model"] == "local:my-org/my-model:7b"
    assert raw.headers["x-gatewayz-provider"] == "local"
    assert raw.parse().model == "local:my-org/my-model:7b"
    assert openai_fake.requests[-1].body["model"] == "my-org/my-model:7b"
    records = query(
        gateway.runtime.settings.database_url,
        "SELECT model FROM request_records WHERE request_id = :r",
        {"r": raw.headers["x-request-id"]},
    )
    assert [r["model"] for r in records] == ["local:my-org/my-model:7b"]
    again = client.chat.completions.create(
        model=raw.headers["x-gatewayz-model"], messages=[{"role": "user", "content": "hi"}]
    )
    assert again.model == "local:my-org/my-model:7b"


def test_a_402_says_what_is_available_and_the_max_tokens_that_fits(
    gateway: Any, gateway_settings_: Any
) -> None:
    """gpt-4o costs 2.5 / 10 USD per million tokens × 1.25; the prompt "hi" is reserved as 65
    tokens. With $0.001 the largest output that fits is (800 - 162.5) / 10 = 63.75 → 63 tokens."""

    poor = provision(gateway_settings_, "poor@example.com", Decimal("0.001"))
    hi = [{"role": "user", "content": "hi"}]
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=poor.key, max_retries=0) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model=MODEL, messages=hi, max_tokens=100)
        assert caught.value.status_code == 402 and caught.value.code == "insufficient_credits"
        message = caught.value.message
        assert "may cost up to $0.001453125" in message and "max_tokens=100" in message
        assert "$0.001 is available" in message
        assert "set max_tokens to 63 or less" in message
        # Without max_tokens the model's whole output limit is reserved, and the message says so.
        with pytest.raises(openai.APIStatusError) as unbounded:
            sdk.chat.completions.create(model=MODEL, messages=hi)
        assert "no max_tokens, so the model's output limit of 16384 tokens" in unbounded.value.message
        assert "set max_tokens to 63 or less" in unbounded.value.message
        # The advice is exact: 64 is refused, 63 is served.
        with pytest.raises(openai.APIStatusError):
            sdk.chat.completions.create(model=MODEL, messages=hi, max_tokens=64)
        assert sdk.chat.completions.create(model=MODEL, messages=hi, max_tokens=63).choices


def test_a_402_when_not_even_one_token_fits(gateway: Any, gateway_settings_: Any) -> None:

    broke = provision(gateway_settings_, "broke@example.com", Decimal("0.0001"))
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=broke.key, max_retries=0) as sdk,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert caught.value.status_code == 402
    assert "$0.0001 is available. Add credits: not even max_tokens=1 fits" in caught.value.message
