"""A small forward proxy on 127.0.0.1, in its own thread and event loop, as a corporate egress
proxy behaves: `CONNECT host:port` opens a tunnel (https upstreams), an absolute-form request
(`POST http://host:port/path`) is forwarded in origin form (plain http upstreams), and with
credentials configured a request without the right `Proxy-Authorization: Basic` gets a 407.

It records what it saw (`connects`, `forwarded` request lines, the `proxy-authorization` values)
so that a test can say which calls went through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from urllib.parse import urlsplit


class ConnectProxy:
    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.expected = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user is not None else None
        )
        self.connects: list[str] = []  # CONNECT targets
        self.forwarded: list[str] = []  # absolute-form request lines
        self.authorizations: list[str | None] = []
        self.refused = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConnectProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown(server))
            loop.close()

        self._thread = threading.Thread(target=run, name="ConnectProxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    @staticmethod
    async def _shutdown(server: asyncio.Server) -> None:
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            self.authorizations.append(fields.get("proxy-authorization"))
            if self.expected is not None and fields.get("proxy-authorization") != self.expected:
                self.refused += 1
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'proxy-authenticate: Basic realm="test"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'
                )
                await writer.drain()
                return
            if method == "CONNECT":
                self.connects.append(target)
                host, _, port = target.rpartition(":")
                up_reader, upstream = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                self.forwarded.append(lines[0])
                url = urlsplit(target)
                assert url.hostname is not None
                up_reader, upstream = await asyncio.open_connection(url.hostname, url.port or 80)
                origin_form = f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1"
                kept = [line for line in lines[1:] if not line.lower().startswith("proxy-authorization:")]
                upstream.write("\r\n".join([origin_form, *kept]).encode("latin-1"))
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.write_eof()
