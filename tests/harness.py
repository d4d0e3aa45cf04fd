"""Run a Gatewayz app under uvicorn (uvloop + httptools, as `gatewayz serve` does) on a free
loopback port in a background thread, so tests talk to it over real HTTP with the real SDKs."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from shared.runtime import Runtime


class GatewayServer:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,  # as `gatewayz serve`: X-Forwarded-For only from trusted proxies
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Runtime:
        rt: Runtime | None = self.app.state.runtime
        assert rt is not None, "the runtime is built on the first request"
        return rt

    def start(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
