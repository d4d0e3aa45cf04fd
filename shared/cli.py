"""The `gatewayz` command (SPEC §1): `gatewayz serve [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from shared.config import ConfigError, Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.runtime import Runtime
    from shared.server import create_server_app

    env = dict(os.environ)
    if not env.get("GATEWAYZ_ADMIN_KEY"):
        # A newcomer's first run must work: make a bootstrap key for this run and say so.
        env["GATEWAYZ_ADMIN_KEY"] = "gw_admin_" + secrets.token_urlsafe(24)
        print(
            f"GATEWAYZ_ADMIN_KEY was not set; this run accepts: {env['GATEWAYZ_ADMIN_KEY']}", file=sys.stderr
        )
    try:
        settings = Settings.from_env(env)
        runtime = Runtime.build(settings)  # validate catalog and providers before listening
    except (ConfigError, ValueError) as exc:
        print(f"gatewayz: configuration error: {exc}", file=sys.stderr)
        return 2
    app = create_server_app(settings)
    app.state.runtime = runtime
    configured = sorted(pid for pid, ep in runtime.endpoints.items() if ep.configured)
    print(
        f"Gatewayz on http://{args.host}:{args.port} — {len(runtime.catalog.models)} models, "
        f"providers configured: {', '.join(configured) or 'none (set <ID>_API_KEY or <ID>_BASE_URL)'}",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=args.access_log,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatewayz", description="Gatewayz universal inference API")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run every function in one local server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--access-log", action="store_true", help="log every request (off: it costs throughput)"
    )
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
