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

import jwt
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
        # The assertion names the signing key, as Google's key rotation needs.
        assert jwt.get_unverified_header(form["assertion"])["kid"] == info["private_key_id"]
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


def _ec_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _without(field: str) -> Any:
    return lambda info: json.dumps({k: v for k, v in info.items() if k != field})


# What an operator can get wrong in the key, and the reason the error must give.
UNUSABLE: dict[str, tuple[Any, str]] = {
    "not-json": (lambda info: json.dumps(info)[:-1], "GOOGLE_VERTEX_CREDENTIALS is unusable"),
    "not-a-service-account": (
        lambda info: json.dumps({**info, "type": "authorized_user"}),
        "not a service-account key (its 'type' is 'authorized_user')",
    ),
    "not-an-object": (lambda info: json.dumps([info]), "not a JSON object"),
    "no-client-email": (_without("client_email"), "missing fields client_email"),
    "null-client-email": (lambda info: json.dumps({**info, "client_email": None}), "'client_email' is empty"),
    "no-private-key": (_without("private_key"), "private_key field was not found"),
    "key-not-pem": (
        lambda info: json.dumps({**info, "private_key": info["private_key"].replace("\n", "")[:300]}),
        "Unable to load PEM file",
    ),
    "key-as-lines": (
        lambda info: json.dumps({**info, "private_key": info["private_key"].splitlines()}),
        "'private_key' is not a PEM string",
    ),
    "ec-key": (lambda info: json.dumps({**info, "private_key": _ec_pem()}), "not an RSA key"),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_an_unusable_service_account_is_a_configuration_error(
    case: str, token_fake: GoogleTokenFake, caplog: pytest.LogCaptureFixture
) -> None:
    """A key that cannot be read or used fails with its reason (never the key itself), before
    anything is sent; it is the offer's failure (`connect`: the walk fails over), logged once."""
    from shared.config import Timeouts
    from shared.transport.errors import UpstreamError
    from shared.transport.google_oauth import GoogleTokens
    from shared.transport.upstream import UpstreamClient
    from tests.conftest import run_off_main_thread

    info, public = service_account(token_fake.token_uri)
    token_fake.accounts[info["client_email"]] = public
    spoil, reason = UNUSABLE[case]

    async def scenario() -> list[UpstreamError]:
        http = UpstreamClient(Timeouts())
        tokens = GoogleTokens({"GOOGLE_VERTEX_CREDENTIALS": spoil(info)}, http)
        errors = []
        try:
            for _ in range(2):
                with pytest.raises(UpstreamError) as err:
                    await tokens.token()
                errors.append(err.value)
            return errors
        finally:
            await http.close()

    with caplog.at_level("WARNING", logger="gatewayz.transport"):
        errors = run_off_main_thread(scenario)
    token_fake.reset()
    for err in errors:
        assert (err.status, err.kind, err.failover) == (None, "connect", True)
        assert reason in err.message and "service account" in err.message
    secret = info["private_key"].splitlines()[1]  # a line of the key's body
    assert all(secret not in e.message for e in errors) and secret not in caplog.text
    warnings = [r for r in caplog.records if r.name == "gatewayz.transport"]
    assert len(warnings) == 1 and reason in warnings[0].getMessage()
    assert token_fake.requests == []  # nothing was sent to Google


def test_a_missing_key_file_names_the_file(token_fake: GoogleTokenFake, tmp_path: Path) -> None:
    from shared.transport.errors import UpstreamError
    from shared.transport.google_oauth import load_service_account

    missing = tmp_path / "sa.json"
    with pytest.raises(UpstreamError) as err:
        load_service_account({"GOOGLE_APPLICATION_CREDENTIALS": str(missing)})
    assert str(missing) in err.value.message and "No such file" in err.value.message
    info, _ = service_account(token_fake.token_uri)
    missing.write_text(json.dumps(info))  # the same file, now there: loaded
    credentials, token_uri = load_service_account({"GOOGLE_APPLICATION_CREDENTIALS": str(missing)})
    assert credentials.service_account_email == info["client_email"] and token_uri == token_fake.token_uri


def test_a_gateway_with_an_unusable_service_account_answers_502_not_500(
    fakes: dict[str, Any],
    tmp_path: Path,
    token_fake: GoogleTokenFake,
    vertex_fake: GeminiFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At request time the broken key is the provider's failure (502, attempts say `connect`),
    the same on every request, with the reason in the gateway's log once."""
    vertex_fake.reset()  # what an earlier test sent it
    info, _ = service_account(token_fake.token_uri)
    del info["client_email"]
    gw, account = _gateway(fakes, tmp_path, vertex_fake, info)
    try:
        with (
            caplog.at_level("WARNING", logger="gatewayz.transport"),
            openai.OpenAI(base_url=f"{gw.url}/v1", api_key=account.key, max_retries=0, timeout=20) as sdk,
        ):
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as err:
                    sdk.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=stream
                    )
                assert err.value.status_code == 502
                assert "google-vertex (connect)" in err.value.message
                assert err.value.response.headers["x-gatewayz-attempts"].startswith("google-vertex:connect")
        assert token_fake.requests == [] and vertex_fake.requests == []
        logged = [r.getMessage() for r in caplog.records if r.name == "gatewayz.transport"]
        assert len(logged) == 1 and "missing fields client_email" in logged[0]
    finally:
        gw.stop()
        token_fake.reset()
        vertex_fake.reset()


def test_the_token_bench_runs() -> None:
    """bench/vertex_token.py (the measured reason the exchange stays on our client) still runs
    every way it compares; a smoke run, no timing asserted."""
    from bench.vertex_token import compare
    from tests.conftest import run_off_main_thread

    results = run_off_main_thread(lambda: compare(0.005, 1))
    assert "gateway: google-auth signs, async exchange" in results
    assert len(results) == 7 and all(r["mint_ms"] > 0 for r in results.values())
