"""No secret in any telemetry (issue 16). One server run with every backend on: JSON log lines
(with the request record of GATEWAYZ_REQUEST_LOG), Prometheus `/metrics`, OTLP spans to a receiver
and Sentry events to a fake, while every kind of secret is in use: a user's API key and a wrong
one, the provider keys, the admin key, a Supabase access token (JWT) and its signing secret, the
key minted by the sign-in, the metrics token and the key-hash secret. Then every byte each backend
produced is scanned. Each backend must have produced something, or the scan would prove nothing."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import Request

from shared import observe
from shared.observe import errors, prometheus, tracing
from shared.observe.logs import JsonFormatter, Redact, log_config
from tests.conftest import ADMIN_KEY, gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.sentry_fake import SentryFake
from tests.fakes.server import Reply
from tests.fakes.supabase_fake import SupabaseFake
from tests.observe.test_tracing import OtlpReceiver

JWT_SECRET = "scan-supabase-jwt-secret-0123456789-abcdefghij"
METRICS_TOKEN = "scan-metrics-token-0123456789"
WRONG_KEY = "gw_live_not_a_key_but_still_secret_0123456789"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the gateway, uvicorn and the libraries, as `--log-format json` writes them
    (the handler of `log_config`: the JSON formatter and the redaction filter)."""
    config = log_config("json", "info")
    assert config["handlers"]["stderr"]["filters"] == ["redact"]
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redact())
    loggers = [logging.getLogger(name) for name in ("gatewayz", "uvicorn", "")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("gatewayz").setLevel(logging.INFO)
    try:
        yield out
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_no_secret_reaches_logs_metrics_spans_or_sentry(
    fakes: dict[str, Any],
    openai_fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    captured_logs: io.StringIO,
) -> None:
    supabase = SupabaseFake(JWT_SECRET).start()
    sentry = SentryFake().start()
    receiver = OtlpReceiver()
    monkeypatch.setenv("SENTRY_DSN", sentry.dsn)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("GATEWAYZ_METRICS_TOKEN", METRICS_TOKEN)
    monkeypatch.setenv("GATEWAYZ_REQUEST_LOG", "1")
    prometheus.reset()
    settings = gateway_settings(
        fakes, f"sqlite:///{tmp_path / 'g.db'}", SUPABASE_JWT_SECRET=JWT_SECRET, SUPABASE_URL=supabase.url
    )
    account = provision(settings, "scan@example.com", Decimal(10))
    server = start_gateway(settings)  # builds every backend the environment asks for

    async def boom(request: Request) -> None:
        presented = request.headers["authorization"]  # a secret in a local variable
        raise RuntimeError(f"a bug while serving {presented} with sk-test-openai")

    server.app.add_api_route("/boom", boom, methods=["POST"])
    token = supabase.sign_hs256(supabase.claims(sub=str(uuid.uuid4()), email="jwt@example.com"))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            user = {"authorization": f"Bearer {account.key}"}
            openai_fake.script("gpt-4o", Reply(status=503))  # openai fails, openrouter serves
            chat = http.post(
                "/v1/chat/completions",
                headers=user,
                json={
                    "model": "openai/gpt-4o",
                    "messages": [{"role": "user", "content": "a private prompt"}],
                },
            )
            assert chat.status_code == 200, chat.text
            assert (
                http.get("/admin/users", headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
            )
            assert http.get("/v1/me", headers={"authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
            session = http.post("/auth/session", headers={"authorization": f"Bearer {token}"})
            assert session.status_code == 200, session.text
            minted = session.json()["api_key"]["key"]
            assert http.post("/boom", headers=user, json={"prompt": "a private prompt"}).status_code == 500
            scraped = http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
            assert scraped.status_code == 200
    finally:
        server.stop()
        errors.flush()
        tracing.reset()  # exports the pending spans
        prometheus.reset()
        observe.uninstall(observe._LOG_SINK)
        deadline = time.monotonic() + 5
        while not sentry.events() and time.monotonic() < deadline:
            time.sleep(0.05)
        errors.disable()
        sentry.stop()
        supabase.stop()
        receiver.server.shutdown()
        receiver.server.server_close()

    logs = captured_logs.getvalue()
    spans = b"".join(receiver.bodies).decode("latin-1")
    events = b"\n".join(sentry.raw).decode("latin-1")
    # Every backend heard the run.
    assert chat.headers["x-request-id"] in logs and '"logger":"gatewayz.request"' in logs
    assert "gatewayz_inference_requests_total" in scraped.text
    assert len(receiver.spans()) >= 3  # the request and its two attempts
    assert len(sentry.events()) == 1
    secrets = {
        "API key": account.key,
        "wrong key": WRONG_KEY,
        "minted key": minted,
        "admin key": ADMIN_KEY,
        "JWT": token,
        "JWT signature": token.rsplit(".", 1)[1],
        "JWT secret": JWT_SECRET,
        "metrics token": METRICS_TOKEN,
        "key-hash secret": settings.key_secret,
        "prompt": "a private prompt",
        **{f"{name} provider key": value for name, value in settings_keys(settings).items()},
    }
    for backend, text in {"logs": logs, "metrics": scraped.text, "spans": spans, "sentry": events}.items():
        leaked = [what for what, secret in secrets.items() if secret and secret in text]
        assert not leaked, f"{backend} holds: {leaked}"


def settings_keys(settings: Any) -> dict[str, str]:
    """The provider keys the gateway sent upstream (`sk-test-<provider>` from the fakes' env)."""
    return {pid: f"sk-test-{pid}" for pid in ("openai", "openrouter", "anthropic", "groq")}
