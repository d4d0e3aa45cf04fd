"""A request Claude Code 2.1.328 really sent (tests/fixtures/claude_code_2.1.328_request.json:
system blocks with cache_control, 12 tools, adaptive thinking with `display`, output_config,
context_management, a `system` turn inside `messages`, eight betas, `stream: true`) replayed
through the gateway: to an Anthropic model it must arrive byte for byte as sent apart from the
model, and its stream come back byte for byte; to an OpenAI model it must come back as a valid
Messages stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.conftest import Account
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer

RECORDED = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "claude_code_2.1.328_request.json").read_text()
)


def replay(gateway: GatewayServer, account: Account, body: dict[str, Any]) -> httpx.Response:
    raw = orjson.dumps(body)  # compact, keys in the order Claude Code wrote them (JSON.stringify)
    headers = {
        **RECORDED["headers"],
        "authorization": f"Bearer {account.key}",
        "content-type": "application/json",
    }
    return httpx.post(f"{gateway.url}{RECORDED['path']}", content=raw, headers=headers, timeout=20)


def events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def check_sequence(events: list[tuple[str, dict[str, Any]]]) -> None:
    """The documented grammar: message_start, ping*, (block start, delta*, stop)*, message_delta,
    message_stop — each event's name equal to its data's type, blocks indexed 0, 1, ..."""
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    open_index, next_index = None, 0
    for name, data in events[1:-2]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        else:
            assert name == "content_block_stop" and data["index"] == open_index
            open_index = None
    assert open_index is None and next_index > 0


def test_claude_code_request_reaches_anthropic_byte_for_byte(
    gateway: GatewayServer, account: Account, anthropic_fake: AnthropicFake
) -> None:
    body = RECORDED["body"]
    assert body["model"] == "claude-opus-5-5" and len(body["tools"]) >= 10
    response = replay(gateway, account, body)
    assert response.status_code == 200, response.text
    sent = anthropic_fake.requests[-1]
    assert sent.raw == orjson.dumps(body)  # nothing added, removed, reordered or re-encoded
    assert sent.headers["anthropic-beta"] == RECORDED["headers"]["anthropic-beta"]
    assert sent.headers["anthropic-version"] == RECORDED["headers"]["anthropic-version"]
    assert sent.headers["x-api-key"] == "sk-test-anthropic"  # the gateway's key, never the caller's
    # The stream comes back as the upstream wrote it, event by event.
    reply = anthropic_fake.default
    expected = b"".join(anthropic_fake.stream_events(body, reply, anthropic_fake.content(body, reply)))
    assert response.content == expected
    check_sequence(events_of(response.content))


def test_only_the_model_is_replaced(
    gateway: GatewayServer, account: Account, anthropic_fake: AnthropicFake
) -> None:
    body = {**RECORDED["body"], "model": "anthropic/claude-opus-5.5"}
    assert replay(gateway, account, body).status_code == 200
    assert anthropic_fake.requests[-1].raw == orjson.dumps({**body, "model": "claude-opus-5-5"})


def test_claude_code_request_to_an_openai_model_streams_messages(
    gateway: GatewayServer, account: Account, openai_fake: OpenAIFake
) -> None:
    openai_fake.script("gpt-4o", Reply(text="Hi! How can I help?", chunks=4, input=900, output=6))
    response = replay(gateway, account, {**RECORDED["body"], "model": "openai/gpt-4o"})
    assert response.status_code == 200, response.text
    events = events_of(response.content)
    check_sequence(events)
    text = "".join(d["delta"].get("text", "") for name, d in events if name == "content_block_delta")
    assert text == "Hi! How can I help?"
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["input_tokens"] == 900 and final["usage"]["output_tokens"] == 6
    dropped = response.headers["x-gatewayz-dropped-params"]
    assert "context_management" in dropped
    sent = openai_fake.requests[-1].body
    assert len(sent["tools"]) == len(RECORDED["body"]["tools"])
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "system"]  # the system turn stays where Claude Code put it
    assert sent["stream"] is True
    # Adaptive thinking becomes reasoning_effort, which GPT-4o has not: dropped and named.
    assert "reasoning_effort" in dropped and "reasoning_effort" not in sent
