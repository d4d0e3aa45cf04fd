"""A fake Sentry on 127.0.0.1: the envelope endpoint (`POST /api/<project>/envelope/`) the
sentry-sdk transport posts to, checking what Sentry checks (the `X-Sentry-Auth` header with the
DSN's public key, a known project, a known content encoding) and keeping every envelope, decoded,
for the test to read."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
PROJECT = "42"


class SentryFake:
    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.rejected: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != f"/api/{PROJECT}/envelope/":
                    return self.answer(404, "unknown project", fake)
                if f"sentry_key={PUBLIC_KEY}" not in self.headers.get("x-sentry-auth", ""):
                    return self.answer(401, "missing or bad X-Sentry-Auth", fake)
                encoding = self.headers.get("content-encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding not in (None, "identity"):
                    return self.answer(415, f"unsupported content-encoding {encoding}", fake)
                fake.raw.append(body)
                self.answer(200, "", fake)

            def answer(self, status: int, why: str, fake: SentryFake) -> None:
                if why:
                    fake.rejected.append(why)
                payload = json.dumps({"id": "0" * 32} if status == 200 else {"detail": why}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.server.server_address[1]}/{PROJECT}"

    def start(self) -> SentryFake:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        """The error events of every envelope (an envelope is newline-separated JSON: a header,
        then (item header, item payload) pairs)."""
        out = []
        for raw in self.raw:
            lines = raw.split(b"\n")
            for i in range(1, len(lines) - 1, 2):
                item = json.loads(lines[i])
                if item.get("type") == "event":
                    out.append(json.loads(lines[i + 1]))
        return out
