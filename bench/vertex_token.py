"""Vertex service-account tokens: google-auth's synchronous `refresh()` against the gateway's async
exchange — the measured reason `shared/transport/google_oauth.py` lets google-auth load the key and
sign, but keeps the HTTP exchange on the gateway's own client.

    .venv/bin/python -m bench.vertex_token                    # token endpoint answering in 50 ms
    .venv/bin/python -m bench.vertex_token --latency 0.2 --mints 5 --imports 9

A local token endpoint (a stdlib HTTP server in its own thread) answers every exchange after
`--latency` seconds. In one event loop a ticker wakes every millisecond, as the gateway's other
requests would; while each way mints `--mints` tokens one after the other, the gaps between ticks
beyond that millisecond are the time the loop was blocked (every request on it waited):

- `refresh()` in the loop: `Credentials.refresh(google.auth.transport.requests.Request())` called
  from a coroutine, as an async service using google-auth as documented would;
- `refresh()` in a thread: the same through `asyncio.to_thread`: the loop is free, but each refresh
  holds a thread and goes out on requests' own pool (proxies from the process environment, none
  of the gateway's timeouts, connection reuse or `via` loop mark);
- the gateway: `GoogleTokens.token()` (google-auth's signer, the exchange on `UpstreamClient`).

Then the import cost of what the gateway imports from google-auth (and, for scale, of pyjwt, its
previous signer), in fresh interpreters: median wall time and the RSS the import adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICK = 0.001


def token_endpoint(latency: float) -> ThreadingHTTPServer:
    """Google's token endpoint as far as timing goes: any POST gets a token after `latency`."""
    count = iter(range(1_000_000))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(latency)
            body = json.dumps(
                {"access_token": f"ya29.bench-{next(count)}", "expires_in": 3599, "token_type": "Bearer"}
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def service_account(token_uri: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "bench",
        "private_key_id": "bench-key",
        "private_key": pem,
        "client_email": "bench@bench.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }


async def blocked_while(mint: Callable[[], Awaitable[object]], mints: int) -> dict[str, float]:
    """Mint `mints` tokens in turn while a ticker measures how long the loop could not run it."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            gaps.append(max(0.0, now - last - TICK))
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # the ticker settles
    gaps.clear()
    wall = 0.0
    for _ in range(mints):
        started = time.perf_counter()
        await mint()
        wall += time.perf_counter() - started
        await asyncio.sleep(0.02)  # apart, so that "longest block" is one mint's
    stop.set()
    await tick
    return {
        "mint_ms": wall / mints * 1000,
        "blocked_max_ms": max(gaps, default=0.0) * 1000,
        "blocked_per_mint_ms": sum(g for g in gaps if g > 0.002) / mints * 1000,
    }


async def compare(latency: float, mints: int) -> dict[str, dict[str, float]]:
    import google.auth.transport.requests
    import jwt
    from google.oauth2 import service_account as google_service_account

    from shared.config import Timeouts
    from shared.transport.google_oauth import GoogleTokens
    from shared.transport.upstream import UpstreamClient

    server = token_endpoint(latency)
    info = service_account(f"http://127.0.0.1:{server.server_address[1]}/token")
    env = {"GOOGLE_VERTEX_CREDENTIALS": json.dumps(info)}
    credentials = google_service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    request = google.auth.transport.requests.Request()
    http = UpstreamClient(Timeouts())
    results: dict[str, dict[str, float]] = {}
    try:

        async def in_loop() -> None:
            credentials.refresh(request)  # what this bench is about: a blocking call in a coroutine

        async def in_thread() -> None:
            await asyncio.to_thread(credentials.refresh, request)

        # A fresh cache per mint (so that every call mints), its key loaded beforehand like
        # google-auth's credentials above: the load is measured on its own below.
        fresh: list[GoogleTokens] = []

        async def gateway() -> None:
            await fresh.pop().token()

        def load_key() -> None:
            google_service_account.Credentials.from_service_account_info(info)

        async def key_load() -> None:
            load_key()

        async def key_load_in_thread() -> None:
            await asyncio.to_thread(load_key)

        async def pyjwt_sign() -> None:
            # main's signer before google-auth: pyjwt parsed the PEM key again on every mint
            jwt.encode({"iss": info["client_email"]}, info["private_key"], algorithm="RS256")

        async def idle() -> None:
            await asyncio.sleep(latency)  # the noise floor: the machine's own scheduling gaps

        for name, mint in (
            ("nothing: an await of the same latency (noise floor)", idle),
            ("google-auth refresh() in the loop", in_loop),
            ("google-auth refresh() in a thread", in_thread),
            ("gateway: google-auth signs, async exchange", gateway),
            ("key load (google-auth, once per process)", key_load),
            ("key load in a thread", key_load_in_thread),
            ("pyjwt key load + sign (main before, every mint)", pyjwt_sign),
        ):
            if mint is gateway:
                fresh[:] = [GoogleTokens(env, http) for _ in range(mints + 1)]
                for tokens in fresh:
                    tokens.account()
            await mint()  # warm: connections, imports
            results[name] = await blocked_while(mint, mints)
    finally:
        await http.close()
        request.session.close()
        server.shutdown()
        server.server_close()
    return results


IMPORT_PROBE = """
import json, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss()
t0 = time.perf_counter()
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "rss_mb": rss() - before}))
"""
IMPORTS = {
    "cryptography RSA alone (both need it)": ["cryptography.hazmat.primitives.asymmetric.rsa"],
    "google-auth (service_account + jwt)": ["google.oauth2.service_account", "google.auth.jwt"],
    "google-auth transport.requests (refresh's)": ["google.auth.transport.requests"],
    "pyjwt + cryptography RSA (before)": ["jwt", "cryptography.hazmat.primitives.asymmetric.rsa"],
}


def import_cost(modules: list[str], runs: int) -> tuple[float, float]:
    times, rss = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, *modules],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(figures["ms"])
        rss.append(figures["rss_mb"])
    return statistics.median(times), statistics.median(rss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.05, help="token endpoint latency, seconds")
    parser.add_argument("--mints", type=int, default=10, help="tokens minted per way")
    parser.add_argument("--imports", type=int, default=5, help="fresh interpreters per import figure")
    args = parser.parse_args(argv)

    print(f"token endpoint latency {args.latency * 1000:.0f} ms, {args.mints} mints per way\n")
    print("| way | ms per mint | loop blocked per mint (ms) | longest block (ms) |")
    print("|---|---:|---:|---:|")
    for name, r in asyncio.run(compare(args.latency, args.mints)).items():
        print(f"| {name} | {r['mint_ms']:.1f} | {r['blocked_per_mint_ms']:.1f} | {r['blocked_max_ms']:.1f} |")
    print(f"\nimports, fresh interpreter, median of {args.imports}\n")
    print("| modules | import (ms) | RSS added (MB) |")
    print("|---|---:|---:|")
    for name, modules in IMPORTS.items():
        ms, mb = import_cost(modules, args.imports)
        print(f"| {name} | {ms:.0f} | {mb:.1f} |")


if __name__ == "__main__":
    main()
