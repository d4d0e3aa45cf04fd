"""`gatewayz serve --log-format json` (issue 16): every line the server writes is one JSON object
(uvicorn's start-up and access lines, the gateway's own, the request record of
GATEWAYZ_REQUEST_LOG), carrying the request id the caller saw, and no secret; text stays readable
with the same fields."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from shared.config import Settings
from shared.observe.logs import JsonFormatter, TextFormatter, redact_handlers
from tests.conftest import provision, upstream_env
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply

ROOT = Path(__file__).resolve().parents[2]
GOOGLE_KEY = "AIza" + "x" * 35


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(env: dict[str, str], *options: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", "--port", str(port), *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gatewayz serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("gatewayz serve did not start")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    return err


def test_serve_writes_one_json_object_a_line_with_the_request_id_and_no_secret(
    fakes: dict[str, Any], openai_fake: OpenAIFake, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAYZ_", "SENTRY_", "OTEL_")) and not k.endswith(("_API_KEY", "_BASE_URL"))
    }
    env.update(upstream_env(fakes))
    env.update(
        {
            "GATEWAYZ_DATABASE_URL": f"sqlite:///{tmp_path / 'gatewayz.db'}",
            "GATEWAYZ_KEY_SECRET": "serve-logs-key-secret-0123456789abcdef",
            "GATEWAYZ_REQUEST_LOG": "1",
        }
    )
    # No GATEWAYZ_ADMIN_KEY: serve makes one, which JSON lines must not show.
    account = provision(
        Settings.from_env({**env, "GATEWAYZ_ADMIN_KEY": "x" * 16}), "logs@example.com", Decimal(5)
    )
    openai_fake.script("gpt-4o", Reply(text="logged"))
    process, url = serve(env, "--log-format", "json", "--access-log", "--log-level", "info")
    try:
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"authorization": f"Bearer {account.key}"},
            json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "a private prompt"}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        refused = httpx.get(
            f"{url}/admin/users", headers={"authorization": "Bearer gw_admin_guess_0123456789"}
        )
        assert refused.status_code == 401
    finally:
        err = stop(process)
    lines = [json.loads(line) for line in err.splitlines()]  # each line parses, or this fails
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "gatewayz.serve" and "Gatewayz on" in line["message"] for line in lines)
    assert any(
        line["logger"].startswith("uvicorn") and "Uvicorn running" in line["message"] for line in lines
    )
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert {(a["method"], a["path"], a["status"]) for a in access} >= {
        ("POST", "/v1/chat/completions", 200),
        ("GET", "/admin/users", 401),
    }
    (record,) = [line for line in lines if line["logger"] == "gatewayz.request"]
    assert record["request_id"] == answer.headers["x-request-id"]
    assert (record["model"], record["provider"], record["status"]) == ("openai/gpt-4o", "openai", "ok")
    assert record["output_tokens"] == answer.json()["usage"]["completion_tokens"]
    for secret in (account.key, "gw_admin_", "sk-test-openai", "a private prompt", "serve-logs-key-secret"):
        assert secret not in err


def record(name: str, message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    out = logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, None)
    out.__dict__.update(extra)
    return out


def test_the_formats_carry_the_same_fields() -> None:
    entry = record("gatewayz.health", "breaker %s opened", "openai", request_id="req_1", model="gpt-4o")
    line = json.loads(JsonFormatter().format(entry))
    assert line["message"] == "breaker openai opened" and line["level"] == "WARNING"
    assert (line["request_id"], line["model"]) == ("req_1", "gpt-4o")
    assert line["time"].endswith("+00:00")
    text = TextFormatter().format(entry)
    assert text.endswith(
        'WARNING gatewayz.health: breaker openai opened {"request_id":"req_1","model":"gpt-4o"}'
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failed = logging.LogRecord("gatewayz", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = json.loads(JsonFormatter().format(failed))
    assert line["exception"].startswith("Traceback") and "RuntimeError: boom" in line["exception"]


def test_a_secret_in_an_exception_is_masked_by_every_handler_redact_handlers_touched() -> None:
    # Lambda's runtime writes the gateway's records through its own root handler: the Mangum and
    # Web Adapter entries put the filter on it (here: a logger of the test's own).
    out = io.StringIO()
    logger = logging.getLogger("gatewayz-test-redact")
    logger.propagate = False
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    redact_handlers(logger)
    redact_handlers(logger)  # idempotent: one filter per handler
    assert len(handler.filters) == 1
    try:
        try:
            raise RuntimeError(f"upstream refused https://up.example/v1?key={GOOGLE_KEY}")
        except RuntimeError:
            logger.exception(
                "call failed for Bearer gw_live_abcdefgh0123", extra={"url": "sk-ant-0123456789"}
            )
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "call failed for [redacted]" in text and "RuntimeError: upstream refused" in text
    for secret in (GOOGLE_KEY, "gw_live_abcdefgh0123", "sk-ant-0123456789"):
        assert secret not in text
