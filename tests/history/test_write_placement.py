"""Where the history write happens in the response (shared.history.recorder): the gateway's ASGI
app driven directly, so the test sees each message it sends.

On a server process the response closes first and the write follows (a keep-alive caller is
never held behind it); where the platform freezes the process once the response ends (Lambda:
`AWS_LAMBDA_FUNCTION_NAME` set) the turn is already written when the response closes. Either
way every byte of the answer has been sent before the write starts.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet

from shared.runtime import Runtime
from shared.server import create_server_app
from tests.conftest import gateway_settings, provision
from tests.fakes.server import FakeServer, Reply
from tests.store.support import off_main_thread

KEY = Fernet.generate_key().decode()


def drive(
    app: Any, body: dict[str, Any], key: str, loads: list[int] | None = None
) -> list[tuple[str, bool, int]]:
    """Send one chat request through the ASGI app; for each body message: whether it closed the
    response, and how many history sessions existed when it was sent. `loads` receives the load
    the SQLite group commit reads (requests in flight that may soon commit) when the history write
    starts."""

    async def run() -> list[tuple[str, bool, int]]:
        rt = Runtime.build(app.state.settings)
        app.state.runtime = rt
        if loads is not None:
            write = rt.history.write

            async def observed(turn: Any) -> str:
                loads.append(rt.db.load())  # type: ignore[attr-defined]
                return await write(turn)

            rt.history.write = observed  # type: ignore[method-assign]
        seen: list[tuple[str, bool, int]] = []
        raw = orjson.dumps(body)
        messages = [{"type": "http.request", "body": raw, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.sleep(3600)  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                count = (await rt.db.fetch("SELECT COUNT(*) AS n FROM chat_sessions"))[0]["n"]
                seen.append((message.get("body", b"").decode(), bool(message.get("more_body")), int(count)))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {key}".encode()),
                (b"x-gatewayz-history", b"on"),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        try:
            await app(scope, receive, send)
            await rt.db.fetch("DELETE FROM chat_messages")
            await rt.db.fetch("DELETE FROM chat_sessions")
        finally:
            await rt.close()
        return seen

    return off_main_thread(lambda: asyncio.run(run()))


@pytest.mark.parametrize("serverless", [False, True], ids=["server", "lambda"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_write_follows_the_answer_and_on_lambda_precedes_the_close(
    fakes: dict[str, FakeServer], tmp_path: Any, serverless: bool, stream: bool
) -> None:
    extra = {"AWS_LAMBDA_FUNCTION_NAME": "gatewayz-chat"} if serverless else {}
    settings = gateway_settings(
        fakes, f"sqlite:///{tmp_path / 'g.db'}", GATEWAYZ_ENCRYPTION_KEYS=KEY, **extra
    )
    account = provision(settings, "placement@example.com", Decimal(10))
    fakes["openai"].script("gpt-4o", Reply(text="Placed."))
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "where?"}], "stream": stream}

    loads: list[int] = []
    seen = drive(create_server_app(settings), body, account.key, loads)

    answer = [s for s in seen if s[0]]
    assert answer and all(count == 0 for _, _, count in answer)  # every byte before the write
    assert ("data: [DONE]" if stream else "Placed.") in "".join(text for text, _, _ in answer)
    closing = seen[-1]
    assert closing[1] is False  # the response's last message closes it
    if serverless:
        assert closing[2] == 1, "on Lambda the turn must be written before the response ends"
    else:
        assert closing[2] == 0, "on a server the response closes before the write"
        # ...and the answered request no longer counts as one that may soon commit: counted, it
        # made the next request's reserve wait out the SQLite grouping window (+2 ms TTFB).
        assert loads == [0]
