"""The Vercel AI SDK's default OpenAI provider (npm `ai` + `@ai-sdk/openai`, pinned in
tests/clients/) pointed at the gateway: `createOpenAI({baseURL, apiKey})(model)` calls
`/v1/responses`, and `generateText` and `streamText` answer for an OpenAI model (native
pass-through) and an Anthropic model (translated), through the fakes; each answer is billed. A
second turn with the first answer in its history works with `store: false` (the SDK then sends the
items); by default the SDK refers to items OpenAI would have stored, and the 400 says what to set."""

from __future__ import annotations

import json
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from tests.clients import node_clients
from tests.conftest import provision
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer
from tests.store.support import query

SCRIPT = Path(__file__).resolve().parents[1] / "clients" / "vercel_ai_sdk.mjs"
# The catalog's USD per million input and output tokens of each model's first offer; markup 1.25.
PRICES = {
    "openai/gpt-4o": (Decimal("2.5"), Decimal(10)),
    "anthropic/claude-opus-5.5": (Decimal(4), Decimal(20)),
}


def ai_sdk(gateway: GatewayServer, key: str, model: str) -> dict[str, Any]:
    """Run the script with node from the clients' directory (bare imports resolve from there)."""
    done = subprocess.run(
        ["node", "--input-type=module", "-", f"{gateway.url}/v1", key, model],
        input=SCRIPT.read_text(),
        cwd=node_clients(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("model", "fake_name", "native", "path"),
    [
        ("openai/gpt-4o", "openai_fake", "gpt-4o", "/openai/v1/responses"),
        ("anthropic/claude-opus-5.5", "anthropic_fake", "claude-opus-5-5", "/v1/messages"),
    ],
)
def test_generate_and_stream_text(
    gateway: GatewayServer,
    gateway_settings_: Settings,
    gateway_db: str,
    openai_fake: OpenAIFake,
    anthropic_fake: AnthropicFake,
    request: pytest.FixtureRequest,
    model: str,
    fake_name: str,
    native: str,
    path: str,
) -> None:
    fake = request.getfixturevalue(fake_name)
    fake.script(
        native,
        Reply(text="Hi there!", input=20, output=3),
        Reply(text="One, two, three.", input=10, output=6, chunks=4),
    )
    user = provision(gateway_settings_, f"ai-sdk-{uuid.uuid4().hex[:8]}@example.com", Decimal(5))
    result = ai_sdk(gateway, user.key, model)
    generated, streamed = result["generate"], result["stream"]
    assert generated["text"] == "Hi there!" and generated["finishReason"] == "stop"
    assert (generated["usage"]["inputTokens"], generated["usage"]["outputTokens"]) == (20, 3)
    assert streamed["text"] == "One, two, three." and len(streamed["deltas"]) > 1
    assert streamed["finishReason"] == "stop"
    assert (streamed["usage"]["inputTokens"], streamed["usage"]["outputTokens"]) == (10, 6)
    assert generated["responseId"].startswith("resp_") and streamed["responseId"].startswith("resp_")
    follow_up = result["followUpUnstored"]
    assert follow_up == {"text": "Hello from the fake upstream."}, follow_up
    sent = fake.requests[-1].body
    assert "Hi there!" in json.dumps(sent)  # the first answer went along in the history
    refused = result["followUpDefault"]
    assert refused["status"] == 400 and "store: false" in refused["error"], refused
    assert [r.path for r in fake.requests] == [path, path, path]  # the refused turn reached nobody
    # Billed exactly: one usage row per answer, at the catalog's prices.
    prompt, completion = PRICES[model]
    for answer, (tokens_in, tokens_out) in ((generated, (20, 3)), (streamed, (10, 6))):
        rows = query(
            gateway_db,
            "SELECT amount_pico FROM credit_transactions WHERE request_id = :r AND type = 'usage'",
            {"r": answer["headers"]["x-request-id"]},
        )
        expected = (tokens_in * prompt + tokens_out * completion) / Decimal(1_000_000) * Decimal("1.25")
        assert len(rows) == 1 and -Decimal(rows[0]["amount_pico"]) / Decimal(10) ** 12 == expected
    assert Decimal(generated["headers"]["x-gatewayz-cost"]) == (20 * prompt + 3 * completion) / Decimal(
        1_000_000
    ) * Decimal("1.25")
