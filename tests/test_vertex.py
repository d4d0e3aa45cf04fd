"""Google Vertex AI with a service account: the gateway mints OAuth2 access tokens from the
account's key (a JWT signed with a locally generated RSA key, exchanged at a faked token
endpoint that verifies it) and Vertex's fake accepts only tokens that endpoint issued.

The official `openai` SDK drives Gemini on Vertex through the gateway, streamed and not; the token
is minted once and reused; a key the token endpoint does not know ends in a 502 (the provider's
credentials failed), never in a call with a made-up token.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import gateway_settings, provision, start_gateway
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.google_token_fake import GoogleTokenFake, service_account
from tests.fakes.server import Reply

MODEL = "google-vertex:google/gemini-2.5-flash"
NATIVE = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def token_fake() -> Iterator[GoogleTokenFake]:
    fake = GoogleTokenFake().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def vertex_fake(token_fake: GoogleTokenFake) -> Iterator[GeminiFake]:
    fake = GeminiFake().start()
    fake.token_check = token_fake.valid
    yield fake
    fake.stop()


def _gateway(fakes: dict[str, Any], tmp: Path, vertex: GeminiFake, account_json: dict[str, Any]) -> Any:
    settings = gateway_settings(
        fakes,
        f"sqlite:///{tmp / 'gatewayz.db'}",
        GOOGLE_VERTEX_BASE_URL=vertex.base_for("google-vertex"),
        GOOGLE_VERTEX_CREDENTIALS=json.dumps(account_json),
        GOOGLE_VERTEX_API_KEY="",
    )
    account = provision(settings, "vertex@example.com", Decimal(10))
    return start_gateway(settings), account


def test_gemini_on_vertex_with_a_service_account(
    fakes: dict[str, Any], tmp_path: Path, token_fake: GoogleTokenFake, vertex_fake: GeminiFake
) -> None:
    info, public = service_account(token_fake.token_uri)
    token_fake.accounts[info["client_email"]] = public
    closing: list[Any] = []
    gw, account = _gateway(fakes, tmp_path, vertex_fake, info)
    try:
        sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=account.key, max_retries=0, timeout=20)
        closing.append(sdk)
        vertex_fake.script(NATIVE, Reply(text="from Vertex", input=10, output=3))
        raw = sdk.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.parse().choices[0].message.content == "from Vertex"
        assert raw.headers["x-gatewayz-provider"] == "google-vertex"
        vertex_fake.script(NATIVE, Reply(text="streamed from Vertex", chunks=3))
        stream = sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "streamed from Vertex"
        )
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "again"}])
        # One token for all three calls, sent as the bearer the fake checked against the issuer.
        assert len(token_fake.requests) == 1
        bearers = {r.headers["authorization"] for r in vertex_fake.requests}
        assert len(bearers) == 1 and token_fake.valid(bearers.pop()[7:])
        form = token_fake.requests[0].body
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    finally:
        for c in closing:
            c.close()
        gw.stop()
        token_fake.reset()
        vertex_fake.reset()


def test_an_unknown_service_account_is_refused_at_the_token_endpoint(
    fakes: dict[str, Any], tmp_path: Path, token_fake: GoogleTokenFake, vertex_fake: GeminiFake
) -> None:
    info, _ = service_account(token_fake.token_uri, email="stranger@other.iam.gserviceaccount.com")
    closing: list[Any] = []
    gw, account = _gateway(fakes, tmp_path, vertex_fake, info)  # never registered with the fake
    try:
        sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=account.key, max_retries=0, timeout=20)
        closing.append(sdk)
        with pytest.raises(openai.APIStatusError) as info_:
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert info_.value.status_code == 502
        assert "google-vertex (401)" in info_.value.message  # the provider's credentials, not the caller's
        assert len(token_fake.requests) == 1  # the exchange was tried, and refused
        assert vertex_fake.requests == []  # nothing went to Vertex without a real token
    finally:
        for c in closing:
            c.close()
        gw.stop()
        token_fake.reset()
        vertex_fake.reset()


def test_vertex_fake_refuses_a_token_it_did_not_mint(
    token_fake: GoogleTokenFake, vertex_fake: GeminiFake
) -> None:
    import urllib.error
    import urllib.request

    url = vertex_fake.base_for("google-vertex") + f"/models/{NATIVE}:generateContent"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()
    req = urllib.request.Request(
        url, data=body, headers={"authorization": "Bearer ya29.forged", "content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    err.value.close()
    assert err.value.code == 401


def test_failover_anthropic_then_bedrock_then_claude_on_vertex(
    fakes: dict[str, Any], tmp_path: Path, token_fake: GoogleTokenFake
) -> None:
    """One Claude model, three clouds: Anthropic overloaded, Bedrock unavailable, Vertex serves
    (with the service account's token), streamed and not."""
    from tests.fakes.anthropic_fake import AnthropicFake
    from tests.fakes.bedrock_fake import BedrockFake

    info, public = service_account(token_fake.token_uri)
    token_fake.accounts[info["client_email"]] = public
    claude_vertex = AnthropicFake().start()
    claude_vertex.token_check = token_fake.valid
    anthropic_fake, bedrock_fake = fakes["anthropic"], fakes["bedrock"]
    assert isinstance(bedrock_fake, BedrockFake)
    settings = gateway_settings(
        fakes,
        f"sqlite:///{tmp_path / 'gatewayz.db'}",
        GOOGLE_VERTEX_ANTHROPIC_BASE_URL=claude_vertex.url
        + "/v1/projects/test-project/locations/us-east5/publishers/anthropic",
        GOOGLE_VERTEX_CREDENTIALS=json.dumps(info),
    )
    account = provision(settings, "claude@example.com", Decimal(10))
    gw = start_gateway(settings)
    order = {"provider": {"order": ["anthropic", "aws-bedrock", "google-vertex-anthropic"]}}
    try:
        with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=account.key, max_retries=0, timeout=20) as sdk:
            for stream in (False, True):
                anthropic_fake.script("claude-sonnet-4-5-20250929", Reply(status=529))
                bedrock_fake.script("global.anthropic.claude-sonnet-4-5-20250929-v1:0", Reply(status=503))
                claude_vertex.script("claude-sonnet-4-5@20250929", Reply(text="Claude via Vertex", chunks=2))
                raw = sdk.chat.completions.with_raw_response.create(
                    model="anthropic/claude-sonnet-4.5",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=stream,
                    extra_body=order,
                )
                parsed = raw.parse()
                text = (
                    "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
                    if stream
                    else parsed.choices[0].message.content
                )
                assert text == "Claude via Vertex"
                assert raw.headers["x-gatewayz-provider"] == "google-vertex-anthropic"
                attempts = raw.headers["x-gatewayz-attempts"]
                assert attempts.startswith("anthropic:529") and "aws-bedrock:503" in attempts
            sent = claude_vertex.requests[-1]
            assert sent.path.endswith("/models/claude-sonnet-4-5@20250929:streamRawPredict")
            assert json.loads(sent.raw)["anthropic_version"] == "vertex-2023-10-16"
            assert "model" not in json.loads(sent.raw)
            assert token_fake.valid(sent.headers["authorization"][7:])
    finally:
        gw.stop()
        claude_vertex.stop()
        token_fake.reset()


def test_a_token_near_expiry_is_refreshed_in_the_background(token_fake: GoogleTokenFake) -> None:
    """Within 15 minutes of expiry the current token is still handed out at once while a new one
    is minted; the request after that gets the new one. One exchange at a time."""
    from shared.config import Timeouts
    from shared.transport.google_oauth import GoogleTokens
    from shared.transport.upstream import UpstreamClient
    from tests.conftest import run_off_main_thread

    info, public = service_account(token_fake.token_uri)
    token_fake.accounts[info["client_email"]] = public
    token_fake.lifetime = 600  # inside the refresh window, outside the 5-minute margin

    async def scenario() -> tuple[str, str, str, int]:
        http = UpstreamClient(Timeouts())
        tokens = GoogleTokens({"GOOGLE_VERTEX_CREDENTIALS": json.dumps(info)}, http)
        try:
            first = await asyncio.gather(*(tokens.token() for _ in range(5)))  # one exchange for all
            assert len(set(first)) == 1
            exchanges = len(token_fake.requests)
            second = await tokens.token()  # near expiry: answered at once, a refresh starts
            assert tokens._task is not None
            await tokens._task
            third = await tokens.token()
            return first[0], second, third, exchanges
        finally:
            await http.close()

    try:
        first, second, third, exchanges = run_off_main_thread(scenario)
    finally:
        token_fake.lifetime = 3599
        token_fake.reset()
    assert exchanges == 1
    assert second == first and third != first
