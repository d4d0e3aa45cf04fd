"""`POST /v1/responses` (and GET / DELETE of stored responses) end to end with the official `openai`
SDK against the gateway on loopback (SPEC §2.3), for a model of each dialect: GPT-4o (native
pass-through to the OpenAI fake's /responses), Claude (translated to the Anthropic fake) and Gemini
(translated to the Gemini fake). What came back is read through the SDK's own types and stream
accumulator, what the upstream received through the fakes, and what was charged through the
ledger, against the catalog's prices."""

from __future__ import annotations

import json
import logging
import time
import uuid
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.conftest import provision
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply, ToolCall
from tests.harness import GatewayServer
from tests.store.support import query

MODELS = {"openai": "openai/gpt-4o", "claude": "claude-opus-5-5", "gemini": "google/gemini-2.5-flash"}
NATIVE_IDS = {"openai": "gpt-4o", "claude": "claude-opus-5-5", "gemini": "gemini-2.5-flash"}
# The catalog's USD per million tokens (input, output) of each model's first offer.
PRICES = {"openai": (Decimal("2.5"), Decimal(10)), "claude": (Decimal(4), Decimal(20)),
          "gemini": (Decimal("0.3"), Decimal("2.5"))}  # fmt: skip
MARKUP = Decimal("1.25")
M = Decimal(1_000_000)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
FAMILIES = ["openai", "claude", "gemini"]


@pytest.fixture
def fakes_by_family(
    openai_fake: OpenAIFake, anthropic_fake: AnthropicFake, gemini_fake: GeminiFake
) -> dict[str, Any]:
    return {"openai": openai_fake, "claude": anthropic_fake, "gemini": gemini_fake}


def script(fakes: dict[str, Any], family: str, *replies: Reply) -> None:
    fakes[family].script(NATIVE_IDS[family], *replies)


def last_body(fakes: dict[str, Any], family: str) -> dict[str, Any]:
    body = fakes[family].requests[-1].body
    assert isinstance(body, dict)
    return body


def charged(gateway_db: str, request_id: str) -> Decimal:
    """What the ledger charged for a request (its one usage row)."""
    rows = query(
        gateway_db,
        "SELECT amount_pico FROM credit_transactions WHERE request_id = :r AND type = 'usage'",
        {"r": request_id},
    )
    assert len(rows) == 1, rows
    return -Decimal(rows[0]["amount_pico"]) / Decimal(10) ** 12


def price(family: str, input_tokens: int, output_tokens: int) -> Decimal:
    prompt, completion = PRICES[family]
    return (input_tokens * prompt + output_tokens * completion) / M * MARKUP


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_response_is_answered_and_billed_exactly(
    client: openai.OpenAI, fakes_by_family: dict[str, Any], gateway_db: str, family: str
) -> None:
    script(fakes_by_family, family, Reply(text="Paris.", input=30, output=4))
    raw = client.responses.with_raw_response.create(
        model=MODELS[family], instructions="Be brief.", input="Capital of France?", max_output_tokens=50
    )
    response = raw.parse()
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_") and response.model == (
        "anthropic/claude-opus-5.5" if family == "claude" else MODELS[family]
    )
    assert response.output_text == "Paris."
    assert [item.type for item in response.output] == ["message"]
    assert response.instructions == "Be brief." and response.max_output_tokens == 50
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 4)
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.input_tokens_details.cache_write_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    cost = Decimal(raw.headers["x-gatewayz-cost"])
    assert cost == price(family, 30, 4)
    assert Decimal(str(json.loads(raw.http_response.content)["usage"]["cost"])) == cost
    assert charged(gateway_db, raw.headers["x-request-id"]) == cost
    sent = last_body(fakes_by_family, family)
    if family == "openai":
        assert fakes_by_family[family].requests[-1].path == "/openai/v1/responses"
        assert sent["instructions"] == "Be brief." and sent["input"] == "Capital of France?"
        assert sent["store"] is False and sent["model"] == "gpt-4o" and sent["max_output_tokens"] == 50
    elif family == "claude":
        assert sent["system"] == "Be brief." or sent["system"][0]["text"] == "Be brief."
        assert sent["messages"] == [{"role": "user", "content": "Capital of France?"}]
        assert sent["max_tokens"] == 50
    else:
        assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."
        assert sent["generationConfig"]["maxOutputTokens"] == 50


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_response_is_the_openai_event_sequence(
    client: openai.OpenAI, fakes_by_family: dict[str, Any], gateway_db: str, family: str
) -> None:
    script(fakes_by_family, family, Reply(text="One two three four.", input=12, output=5, chunks=4))
    with client.responses.with_streaming_response.create(
        model=MODELS[family], input="Count.", stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1 and ids.pop().startswith("resp_")  # the gateway's id throughout
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "One two three four." and len(deltas) > 1  # forwarded as it arrived
    usage = events[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (12, 5)
    assert Decimal(str(usage["cost"])) == price(family, 12, 5) == charged(gateway_db, request_id)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("family", "reply", "upstream_usd"),
    [
        # GPT-4o: $2.5 in, $10 out, $1.25 cache read per million (native: OpenAI's usage, read once).
        ("openai", Reply(input=100, cached=900, output=10), 100 * Decimal("2.5") + 900 * Decimal("1.25") + 100),
        # Opus 5.5 translated: $4 in, $20 out, $0.20 cache read, $5 cache write (5 minutes) per million.
        ("claude", Reply(input=100, cached=2000, cache_write=300, output=50),
         100 * Decimal(4) + 2000 * Decimal("0.2") + 300 * Decimal(5) + 50 * Decimal(20)),
    ],
)  # fmt: skip
def test_cache_tokens_are_billed_once_at_their_rates(
    client: openai.OpenAI,
    fakes_by_family: dict[str, Any],
    gateway_db: str,
    family: str,
    reply: Reply,
    upstream_usd: Decimal,
    stream: bool,
) -> None:
    script(fakes_by_family, family, reply)
    if stream:
        with client.responses.with_streaming_response.create(
            model=MODELS[family], input="hi", stream=True
        ) as raw:
            request_id = raw.headers["x-request-id"]
            events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
        usage = events[-1]["response"]["usage"]
    else:
        answer = client.responses.with_raw_response.create(model=MODELS[family], input="hi")
        request_id = answer.headers["x-request-id"]
        usage = json.loads(answer.http_response.content)["usage"]
    expected = upstream_usd / M * MARKUP
    assert Decimal(str(usage["cost"])) == expected == charged(gateway_db, request_id)
    assert usage["input_tokens"] == reply.input + reply.cached + reply.cache_write
    assert usage["input_tokens_details"]["cached_tokens"] == reply.cached
    assert usage["output_tokens"] == reply.output


@pytest.mark.parametrize("family", FAMILIES)
def test_sdk_stream_helper_accumulates_the_response(
    client: openai.OpenAI, fakes_by_family: dict[str, Any], family: str
) -> None:
    script(fakes_by_family, family, Reply(text="Hello there, friend.", chunks=3))
    with client.responses.stream(model=MODELS[family], input="Hi") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == "Hello there, friend."
    assert final.output_text == "Hello there, friend." and final.status == "completed"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_round_trip(
    client: openai.OpenAI, fakes_by_family: dict[str, Any], family: str, stream: bool
) -> None:
    call = ToolCall("get_weather", {"city": "Paris"}, id="call_abc123")
    script(fakes_by_family, family, Reply(tool_calls=[call]), Reply(text="It is sunny."))
    ask: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.responses.stream(model=MODELS[family], input=ask, tools=[WEATHER]) as s:  # type: ignore[arg-type]
            first = s.get_final_response()
    else:
        first = client.responses.create(model=MODELS[family], input=ask, tools=[WEATHER])  # type: ignore[arg-type]
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    fc = calls[0]
    assert fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "Paris"}
    assert fc.call_id and fc.id and fc.id.startswith("fc_")
    turn = [
        *ask,
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": fc.call_id, "output": "sunny, 24C"},
    ]
    second = client.responses.create(model=MODELS[family], input=turn, tools=[WEATHER])  # type: ignore[arg-type]
    assert second.output_text == "It is sunny."
    sent = last_body(fakes_by_family, family)
    if family == "openai":
        assert [i.get("type", "message") for i in sent["input"]] == [
            "message",
            "function_call",
            "function_call_output",
        ]
        assert sent["tools"] == [WEATHER]
    elif family == "claude":
        results = [
            b
            for m in sent["messages"]
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        assert results and results[0]["tool_use_id"] == fc.call_id
        assert sent["tools"][0]["input_schema"] == WEATHER["parameters"]
    else:
        parts = [p for c in sent["contents"] for p in c["parts"]]
        assert any("functionResponse" in p for p in parts)


@pytest.mark.parametrize("family", FAMILIES)
def test_json_schema_text_format(client: openai.OpenAI, fakes_by_family: dict[str, Any], family: str) -> None:
    script(fakes_by_family, family, Reply(text='{"city": "Paris"}'))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}  # fmt: skip
    response = client.responses.create(
        model=MODELS[family],
        input="Which city?",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"city": "Paris"}
    assert response.text is not None and response.text.format.type == "json_schema"
    sent = last_body(fakes_by_family, family)
    if family == "openai":
        assert sent["text"]["format"]["schema"] == schema
    else:
        assert '"city"' in json.dumps(sent) and "required" in json.dumps(sent)  # the schema went along


def test_reasoning_is_a_reasoning_item_and_effort_translates(
    client: openai.OpenAI, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.script("claude-opus-5-5", Reply(text="42.", reasoning="Let me think.", reasoning_tokens=3))
    response = client.responses.create(model=MODELS["claude"], input="Answer?", reasoning={"effort": "low"})
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].summary[0].text == "Let me think."  # type: ignore[union-attr]
    assert "thinking" in anthropic_fake.requests[-1].body


@pytest.mark.parametrize("family", ["openai", "claude"])
def test_previous_response_id_continues_a_stored_conversation(
    client: openai.OpenAI, fakes_by_family: dict[str, Any], family: str
) -> None:
    script(fakes_by_family, family, Reply(text="Hello Ada."), Reply(text="Your name is Ada."))
    first = client.responses.create(model=MODELS[family], input="My name is Ada.", store=True)
    second = client.responses.create(
        model=MODELS[family], input="What is my name?", previous_response_id=first.id, store=True
    )
    assert second.output_text == "Your name is Ada."
    assert second.previous_response_id == first.id and second.id != first.id
    sent = last_body(fakes_by_family, family)
    if family == "openai":
        assert "previous_response_id" not in sent and sent["store"] is False
        texts = [
            i["content"] if isinstance(i["content"], str) else i["content"][0]["text"] for i in sent["input"]
        ]
        assert texts == ["My name is Ada.", "Hello Ada.", "What is my name?"]
        assert all("id" not in i for i in sent["input"])  # ids of items OpenAI never stored are left out
    else:
        turns = [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
                 for m in sent["messages"]]  # fmt: skip
        assert turns == [
            ("user", "My name is Ada."),
            ("assistant", "Hello Ada."),
            ("user", "What is my name?"),
        ]
    # A third turn continues from the second: the whole conversation, in order.
    script(fakes_by_family, family, Reply(text="Goodbye."))
    client.responses.create(model=MODELS[family], input="Bye.", previous_response_id=second.id)
    sent = last_body(fakes_by_family, family)
    assert json.dumps(sent).count("Ada") == 3


def test_output_items_passed_back_by_hand_reach_openai_as_it_takes_them(
    client: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    # OpenAI's docs pass a response's output back as input; with `store: false` upstream a
    # reasoning item without encrypted content would be refused there (the fake refuses it too).
    openai_fake.script("gpt-4o", Reply(text="42.", reasoning="Think."), Reply(text="Still 42."))
    first = client.responses.create(model=MODELS["openai"], input="Answer?")
    assert [i.type for i in first.output] == ["reasoning", "message"]
    history = [
        {"role": "user", "content": "Answer?"},
        *[i.model_dump(exclude_none=True) for i in first.output],
    ]
    second = client.responses.create(
        model=MODELS["openai"], input=[*history, {"role": "user", "content": "Sure?"}]
    )
    assert second.output_text == "Still 42."
    sent = openai_fake.requests[-1].body["input"]
    assert [i.get("type", "message") for i in sent] == ["message", "message", "message"]
    assert all("id" not in i for i in sent)


def test_get_and_delete_a_stored_response(client: openai.OpenAI, openai_fake: OpenAIFake) -> None:
    openai_fake.script("gpt-4o", Reply(text="Stored.", input=9, output=2))
    created = client.responses.create(model=MODELS["openai"], input="Keep this.", store=True)
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == "Stored."
    assert fetched.usage is not None and fetched.usage.output_tokens == 2
    assert fetched.model_extra is not None and fetched.model_extra["store"] is True
    raw = client.responses.with_raw_response.retrieve(created.id)
    assert Decimal(str(json.loads(raw.http_response.content)["usage"]["cost"])) == price("openai", 9, 2)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODELS["openai"], input="Again?", previous_response_id=created.id)


def test_a_response_is_not_stored_unless_asked(client: openai.OpenAI, gateway_db: str) -> None:
    created = client.responses.create(model=MODELS["openai"], input="Forget this.")
    assert created.model_extra is not None and created.model_extra["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    assert not query(gateway_db, "SELECT id FROM stored_responses WHERE id = :i", {"i": created.id})
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODELS["openai"], input="And?", previous_response_id=created.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


def other_user(gateway: GatewayServer, settings: Any, credits: str = "10", **key: Any) -> openai.OpenAI:
    user = provision(settings, f"resp-{uuid.uuid4().hex[:8]}@example.com", Decimal(credits), **key)
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=user.key, max_retries=0, timeout=20)


def test_a_stored_response_is_its_owners_only(
    client: openai.OpenAI, gateway: GatewayServer, gateway_settings_: Any
) -> None:
    created = client.responses.create(model=MODELS["openai"], input="Mine.", store=True)
    with other_user(gateway, gateway_settings_) as stranger:
        with pytest.raises(openai.NotFoundError):
            stranger.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            stranger.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            stranger.responses.create(model=MODELS["openai"], input="Hi", previous_response_id=created.id)
    assert client.responses.retrieve(created.id).id == created.id  # still there for its owner


def test_built_in_tools_need_an_openai_model(client: openai.OpenAI, openai_fake: OpenAIFake) -> None:
    tools: Any = [{"type": "web_search"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODELS["claude"], input="News?", tools=tools)
    assert "web_search" in info.value.body["message"]  # type: ignore[index]
    response = client.responses.create(model=MODELS["openai"], input="News?", tools=tools)
    assert response.status == "completed"
    assert openai_fake.requests[-1].body["tools"] == [{"type": "web_search"}]  # passed through


def test_unsupported_parameters_are_named(client: openai.OpenAI, anthropic_fake: AnthropicFake) -> None:
    raw = client.responses.with_raw_response.create(
        model=MODELS["claude"], input="Hi", text={"verbosity": "low"}, include=["reasoning.encrypted_content"]
    )
    dropped = raw.headers["x-gatewayz-dropped-params"]
    assert "text.verbosity" in dropped and "include" in dropped


@pytest.mark.parametrize("family", ["openai", "claude"])
def test_an_error_after_the_first_event_is_response_failed(
    client: openai.OpenAI, fakes_by_family: dict[str, Any], family: str
) -> None:
    script(fakes_by_family, family, Reply(text="a b c d e f g h", chunks=8, stream_error_after=5))
    with client.responses.with_streaming_response.create(
        model=MODELS[family], input="Go", stream=True
    ) as raw:
        events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["message"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_failover_before_the_first_event(client: openai.OpenAI, openai_fake: OpenAIFake) -> None:
    # GPT-4o is offered by OpenAI (native) and OpenRouter (the pivot, on the same fake's chat route).
    openai_fake.script("gpt-4o", Reply(status=500))
    openai_fake.script("openai/gpt-4o", Reply(text="Served by the next offer."))
    with client.responses.stream(model=MODELS["openai"], input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Served by the next offer."
    assert openai_fake.requests[-1].path == "/openrouter/v1/chat/completions"


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "no-such-model"}, openai.NotFoundError),
        ({"input": []}, openai.BadRequestError),
        ({"temperature": 5}, openai.BadRequestError),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, openai.BadRequestError),
        ({"text": {"format": {"type": "json_schema"}}}, openai.BadRequestError),
    ],
)
def test_caller_errors_raise_the_sdk_classes(
    client: openai.OpenAI, kwargs: dict[str, Any], error: type
) -> None:
    args: dict[str, Any] = {"model": MODELS["openai"], "input": "hi"}
    args.update(kwargs)
    with pytest.raises(error) as info:
        client.responses.create(**args)
    assert info.value.body["message"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("family", ["openai", "claude"])
def test_tool_choice_names_the_function(
    client: openai.OpenAI, fakes_by_family: dict[str, Any], family: str
) -> None:
    call = ToolCall("get_weather", {"city": "Oslo"}, id="call_forced")
    script(fakes_by_family, family, Reply(tool_calls=[call]))
    response = client.responses.create(
        model=MODELS[family],
        input="Anything.",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
    )
    assert response.output[0].type == "function_call"
    sent = last_body(fakes_by_family, family)
    if family == "openai":
        assert sent["tool_choice"] == {"type": "function", "name": "get_weather"}
    else:
        assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}


# Shapes no client sends but anyone can: each a 400 naming the field, never a 500.
HOSTILE: list[dict[str, Any]] = [
    {"tool_choice": {}},
    {"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": "get_weather"}},
    {"tool_choice": ["auto"]},
    {"input": [{"role": ["user"], "content": "hi"}]},
    {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": 5}]}]},
    {"input": [{"role": "user", "content": [{"type": "input_text", "text": None}]}]},
    {"input": [{"type": "function_call_output", "call_id": "c", "output": [1]}]},
    {"input": [{"type": ["message"], "role": "user", "content": "hi"}]},
    {"text": {"format": {"type": {"json": True}}}},
    {"reasoning": {"effort": ["low"]}},
    {"user": {"id": 1}},
    {"instructions": ["be brief"]},
]


@pytest.mark.parametrize("fields", HOSTILE)
def test_hostile_shapes_are_a_400(client: openai.OpenAI, fields: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(**{"model": MODELS["claude"], "input": "hi", **fields})
    assert info.value.body["param"]  # type: ignore[index]


def test_bad_key_is_an_authentication_error(gateway: GatewayServer) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="gw_live_nope", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.responses.create(model=MODELS["openai"], input="hi")
        with pytest.raises(openai.AuthenticationError):
            bad.responses.retrieve("resp_123")


def test_permission_rate_limit_and_credit_refusals(
    gateway: GatewayServer, gateway_settings_: Any, openai_fake: OpenAIFake
) -> None:
    with (
        other_user(gateway, gateway_settings_, scopes=["read"]) as reader,
        pytest.raises(openai.PermissionDeniedError),
    ):
        reader.responses.create(model=MODELS["openai"], input="hi")
    limited = other_user(
        gateway, gateway_settings_, scopes=["inference"], rate_limits={"requests_per_minute": 1}
    )
    with limited:
        limited.responses.create(model=MODELS["openai"], input="hi")
        with pytest.raises(openai.RateLimitError) as info:
            limited.responses.create(model=MODELS["openai"], input="hi")
    assert int(info.value.response.headers["retry-after"]) >= 1
    before = len(openai_fake.requests)
    with (
        other_user(gateway, gateway_settings_, credits="0.0001") as poor,
        pytest.raises(openai.APIStatusError) as paid,
    ):
        poor.responses.create(model=MODELS["openai"], input="hi", max_output_tokens=100_000)
    assert paid.value.status_code == 402
    assert len(openai_fake.requests) == before  # refused before any upstream call


def test_a_failed_store_is_logged_and_the_answer_stands(
    fakes: dict[str, Any], tmp_path: Any, caplog: pytest.LogCaptureFixture, openai_fake: OpenAIFake
) -> None:
    from tests.conftest import gateway_settings, start_gateway

    url = f"sqlite:///{tmp_path / 'nostore.db'}"
    settings = gateway_settings(fakes, url)
    user = provision(settings, "nostore@example.com", Decimal(10))
    query(url, "DROP TABLE stored_responses")  # the write after the answer will fail
    server = start_gateway(settings)
    try:
        with (
            caplog.at_level(logging.ERROR, logger="gatewayz"),
            openai.OpenAI(base_url=f"{server.url}/v1", api_key=user.key, max_retries=0) as sdk,
        ):
            openai_fake.script("gpt-4o", Reply(text="Still answered."))
            created = sdk.responses.create(model=MODELS["openai"], input="hi", store=True)
            assert created.output_text == "Still answered."
            deadline = time.monotonic() + 5  # the write runs after the answer
            while "storing response" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        server.stop()
    assert f"storing response {created.id} failed" in caplog.text
