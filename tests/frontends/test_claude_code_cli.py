"""The real Claude Code CLI (npm @anthropic-ai/claude-code, pinned in tests/clients/) pointed at
the gateway: `claude -p "say hi"` answers for a Claude model (its default, no --model), an OpenAI
model and a Gemini model, through the fakes, and the user is billed for each answer.

The recipe is the README's: ANTHROPIC_BASE_URL = the gateway's root, ANTHROPIC_AUTH_TOKEN = a
Gatewayz key, telemetry and updates off, a throwaway HOME.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import Settings
from tests.clients import node_clients
from tests.conftest import provision
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer


def claude(gateway: GatewayServer, key: str, home: Path, *args: str) -> dict[str, Any]:
    binary = node_clients() / "node_modules" / ".bin" / "claude"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_AUTH_TOKEN": key,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [str(binary), "-p", "say hi", "--output-format", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    ("args", "fake_name", "native"),
    [
        ((), "anthropic_fake", "claude-opus-5-5"),  # Claude Code's own default model
        (("--model", "openai/gpt-4o"), "openai_fake", "gpt-4o"),
        (("--model", "google/gemini-2.5-flash"), "gemini_fake", "gemini-2.5-flash"),
    ],
)
def test_claude_code_answers_and_bills(
    gateway: GatewayServer,
    gateway_settings_: Settings,
    anthropic_fake: AnthropicFake,
    openai_fake: OpenAIFake,
    gemini_fake: GeminiFake,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    args: tuple[str, ...],
    fake_name: str,
    native: str,
) -> None:
    fake = request.getfixturevalue(fake_name)
    fake.script(native, Reply(text="Hi from the fake upstream!", input=1200, output=9))
    user = provision(gateway_settings_, f"claude-code-{uuid.uuid4().hex[:8]}@example.com", Decimal(5))
    result = claude(gateway, user.key, tmp_path, *args)
    assert result["is_error"] is False, result
    assert result["result"] == "Hi from the fake upstream!"
    assert any(r.body.get("model") == native for r in fake.requests if isinstance(r.body, dict))
    credits = httpx.get(f"{gateway.url}/v1/credits", headers={"authorization": f"Bearer {user.key}"}).json()
    usage = [row for row in credits["data"] if row["type"] == "usage"]
    assert usage, credits
    spent = -sum(Decimal(row["amount"]) for row in usage)
    assert spent > 0
    assert Decimal(credits["balance"]) == Decimal(5) - spent  # every charge is a ledger row
