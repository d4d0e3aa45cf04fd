"""Upstash's REST protocol on 127.0.0.1, executed on a real Redis (tests only).

What `upstash-redis` sends (https://upstash.com/docs/redis/features/restapi): `POST /` with one
command as a JSON array (`["SET", "k", "v", "EX", 10]`) → `{"result": …}` or `{"error": "…"}`;
`POST /pipeline` and `POST /multi-exec` with an array of commands → an array of those objects
(multi-exec runs them in one MULTI/EXEC). `Authorization: Bearer <token>` is checked (401
otherwise). With `Upstash-Encoding: base64` every string in a result is base64-encoded, except
the status reply `OK`, which the client passes through. `Upstash-Sync-Token` is answered with a
counter. Each command runs on the real Redis through redis-py with no reply parsing, so EVAL and
EVALSHA (NOSCRIPT included), strings, hashes and sorted sets behave exactly as on Upstash's Redis.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError


def _encode(value: Any, b64: bool) -> Any:
    if isinstance(value, bytes):
        if value == b"OK" or not b64:
            return value.decode("utf-8", "replace")
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_encode(v, b64) for v in value]
    return value  # int or None


def _error(exc: Exception) -> str:
    code = getattr(exc, "status_code", None)  # redis-py strips the prefix (NOSCRIPT, ERR...) off
    return f"{code} {exc}" if code else str(exc)


def _args(command: Any) -> list[Any]:
    if not isinstance(command, list) or not command:
        raise ValueError("ERR the command must be a non-empty JSON array")
    return [a if isinstance(a, str | int | float) and not isinstance(a, bool) else str(a) for a in command]


class UpstashBridge:
    def __init__(self, redis_url: str, token: str = "bridge-test-token", port: int = 0) -> None:
        self.redis_url = redis_url
        self.token = token
        self.port = port
        self.commands = 0  # commands executed, for tests
        self._sync = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._redis: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _run(self, args: list[Any]) -> dict[str, Any]:
        self.commands += 1
        try:
            return {"result": await self._redis.execute_command(*args)}
        except RedisError as exc:
            return {"error": _error(exc)}

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        b64 = request.headers.get("upstash-encoding", "").lower() == "base64"
        try:
            body = orjson.loads(await request.read())
            path = request.path.rstrip("/")
            if path == "":
                replies: Any = await self._run(_args(body))
            elif path == "/pipeline":
                replies = [await self._run(_args(c)) for c in body]
            elif path == "/multi-exec":
                replies = await self._transaction([_args(c) for c in body])
            else:
                return web.json_response({"error": f"ERR unknown path {path}"}, status=404)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        many = isinstance(replies, list)
        out = [
            {"result": _encode(r["result"], b64)} if "result" in r else r
            for r in (replies if many else [replies])
        ]
        failed = any("error" in r for r in out)
        return web.Response(
            body=orjson.dumps(out if many else out[0]),
            status=400 if failed and not many else 200,
            content_type="application/json",
            headers={"upstash-sync-token": str(next(self._sync))},
        )

    async def _transaction(self, commands: list[list[Any]]) -> list[dict[str, Any]]:
        self.commands += len(commands)
        pipe = self._redis.pipeline(transaction=True)
        for args in commands:
            pipe.execute_command(*args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            return [{"error": _error(exc)} for _ in commands]
        return [{"error": _error(r)} if isinstance(r, Exception) else {"result": r} for r in results]

    def start(self) -> UpstashBridge:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._redis = aioredis.Redis.from_url(self.redis_url, decode_responses=False, protocol=2)
            self._redis.response_callbacks = {}  # the raw replies, as Upstash relays them
            app = web.Application()
            app.router.add_post("/{tail:.*}", self.handle)
            runner = web.AppRunner(app, access_log=None)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
                loop.run_until_complete(site.start())
                server = site._server
                assert server is not None and server.sockets
                self.port = server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.run_until_complete(self._redis.aclose())
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(self._redis.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="UpstashBridge", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
