"""The `gatewayz` command (SPEC §1).

    gatewayz serve [--host H] [--port P] [--access-log] [--log-level L] [--log-format text|json]
    gatewayz migrate
    gatewayz users create --email E [--credits USD] [--admin] [--plan P] [--scopes a,b]
    gatewayz keys create --user ID [--name N] [--scopes a,b]
    gatewayz credits grant --user ID --amount USD --reason R [--idempotency-key K]
    gatewayz reap-holds
    gatewayz prune-holds
    gatewayz probe
    gatewayz rollup [--since YYYY-MM-DD]
    gatewayz catalog sync [--providers a,b] [--prices URL|FILE] [--dry-run] [--output FILE]
    gatewayz catalog diff
    gatewayz catalog pin MODEL [--unpin]
    gatewayz byok reencrypt

Every command but `serve` prints one JSON object on stdout; errors go to stderr with exit code 2.
A key made without `--scopes` gets every scope its user's role may hold (`billing, inference, keys,
read`; an admin user's also `admin`): the rule of `shared.accounts.keys.default_scopes`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from shared.config import ConfigError, Settings
from shared.errors import GatewayError


class CliError(Exception):
    pass


def _print(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal amount: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite amount: {text!r}")
    return value


async def _migrate_only(settings: Settings) -> list[str]:
    from shared.store import open_database
    from shared.store.migrate import migrate, read_migrations

    db = open_database(settings.database_url)
    try:
        return await migrate(db, read_migrations())
    finally:
        await db.close()


def _with_runtime(
    action: Callable[[Any, argparse.Namespace], Awaitable[Any]],
) -> Callable[[argparse.Namespace], int]:
    """Run one async action against a fresh runtime (migrated first), print its JSON result."""

    def run(args: argparse.Namespace) -> int:
        from shared.runtime import Runtime

        settings = Settings.from_env()

        async def main() -> Any:
            await _migrate_only(settings)
            rt = Runtime.build(settings)
            try:
                return await action(rt, args)
            finally:
                await rt.close()

        _print(asyncio.run(main()))
        return 0

    return run


async def _users_create(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.accounts.service import Actor

    if await rt.accounts.find_user_by_email(args.email):
        raise CliError(f"a user with email {args.email} already exists")
    if args.credits < 0:
        raise CliError("--credits cannot be negative")
    role = "admin" if args.admin else "user"
    user, key = await rt.accounts.create_user(
        args.email,
        actor=Actor("cli"),
        role=role,
        plan_id=args.plan,
        credits=args.credits,
        key=_key_spec(args, role),
    )
    return {
        "user_id": user["id"],
        "email": user["email"],
        "role": user["role"],
        "plan": user["plan"],
        "balance": user["balance"],
        "api_key": key,
    }


def _key_spec(args: argparse.Namespace, role: str) -> Any:
    """The key of `--scopes` (checked), else of the default rule for the user's role."""
    from shared.accounts.keys import SCOPES, default_scopes
    from shared.accounts.service import KeySpec

    scopes = default_scopes(role)
    if args.scopes is not None:
        scopes = list(dict.fromkeys(s.strip() for s in args.scopes.split(",") if s.strip()))
        unknown = set(scopes) - SCOPES
        if unknown or not scopes:
            raise CliError(
                f"--scopes: unknown scope(s) {', '.join(sorted(unknown)) or '(none given)'}; "
                f"choose from {', '.join(sorted(SCOPES))}"
            )
        if "admin" in scopes and role != "admin":
            raise CliError("--scopes: only an admin user's key may hold the admin scope")
    return KeySpec(name=getattr(args, "name", None) or "default", scopes=scopes)


async def _keys_create(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.accounts.service import Actor

    try:
        user = await rt.accounts.get_user(args.user)
    except LookupError:
        raise CliError(f"no user {args.user}") from None
    key = await rt.accounts.create_key(args.user, _key_spec(args, user["role"]), Actor("cli"))
    return {"user_id": args.user, **key, "api_key": key["key"]}


async def _credits_grant(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.billing import money

    if not args.reason.strip():
        raise CliError("--reason is required")
    try:
        result = await rt.ledger.change_balance(
            args.user,
            args.amount,
            type="grant" if args.amount > 0 else "adjustment",
            description=args.reason,
            actor_type="cli",
            idempotency_key=args.idempotency_key,
        )
    except LookupError:
        raise CliError(f"no user {args.user}") from None
    if not result.applied and result.transaction_id is None:
        raise CliError("the adjustment is larger than the available credit (balance less open holds)")
    return {
        "user_id": args.user,
        "applied": result.applied,
        "transaction_id": result.transaction_id,
        "balance": money(result.balance),
    }


async def _reap(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    return {"expired_holds": await rt.ledger.reap()}


async def _prune(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from datetime import timedelta

    from shared.billing.retention import prune_closed_holds

    retention = timedelta(days=rt.settings.hold_retention_days)
    return (await prune_closed_holds(rt.db, retention)).to_json()


async def _probe(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.routing.probes import run_probes

    return await run_probes(rt)


async def _rollup(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The scheduled rollup, or a reprocess from `--since` (every day up to now in one run)."""
    from datetime import date

    from shared.analytics.rollup import prune_records, roll_up

    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise CliError(f"--since: expected YYYY-MM-DD, got {args.since!r}") from None
    result = await roll_up(rt.db, since=since, max_days=100_000 if since else 31)
    pruned = await prune_records(rt.db, rt.settings.request_retention_days)
    return {**result.view(), "pruned_records": pruned}


async def _byok_reencrypt(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.accounts.byok import reencrypt_all
    from shared.accounts.service import Actor

    return {"reencrypted": await reencrypt_all(rt, Actor("cli"))}


async def _catalog_sync(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.catalog.listings import SourceError
    from shared.catalog.sync import SyncOptions, run_sync

    providers = tuple(p.strip() for p in args.providers.split(",") if p.strip()) if args.providers else None
    try:
        options = SyncOptions(
            providers=providers, prices=args.prices, dry_run=args.dry_run, output=args.output
        )
        return await run_sync(rt, options)
    except SourceError as exc:
        raise CliError(str(exc)) from None


async def _catalog_diff(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.catalog.overlay import last_diff

    return await last_diff(rt)


async def _catalog_pin(rt: Any, args: argparse.Namespace) -> dict[str, Any]:
    from shared.catalog.overlay import set_pin

    await rt.refresh_catalog()  # models a sync added are pinnable too
    model = rt.catalog.resolve(args.model)
    if model is None:
        raise CliError(f"no model {args.model} in the catalog")
    await set_pin(rt.db, model.id, not args.unpin, "cli")
    return {"model": model.id, "pinned": not args.unpin}


def _migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    _print({"applied": asyncio.run(_migrate_only(settings))})
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging
    import logging.config

    import uvicorn

    from shared.observe.logs import log_config
    from shared.runtime import Runtime, freeze_heap
    from shared.server import create_server_app

    # Every line from here on is in the chosen format, uvicorn's included (log_config=None below:
    # uvicorn keeps this configuration and only sets its loggers' levels).
    logging.config.dictConfig(log_config(args.log_format, args.log_level))
    log = logging.getLogger("gatewayz.serve")
    env = dict(os.environ)
    if not env.get("GATEWAYZ_ADMIN_KEY"):
        # A newcomer's first run must work: make a bootstrap key for this run and say so. JSON
        # lines go to a log pipeline, where a secret must never be: there the key is not shown.
        env["GATEWAYZ_ADMIN_KEY"] = "gw_admin_" + secrets.token_urlsafe(24)
        if args.log_format == "text":
            print(
                f"GATEWAYZ_ADMIN_KEY was not set; this run accepts: {env['GATEWAYZ_ADMIN_KEY']}",
                file=sys.stderr,
            )
        else:
            log.warning(
                "GATEWAYZ_ADMIN_KEY is not set: this run made one it does not show; set it to use /admin"
            )
    settings = Settings.from_env(env)
    asyncio.run(_migrate_only(settings))
    runtime = Runtime.build(settings)  # validate catalog and providers before listening
    app = create_server_app(settings)
    app.state.runtime = runtime
    freeze_heap()
    configured = sorted(pid for pid, ep in runtime.endpoints.items() if ep.configured)
    log.info(
        "Gatewayz on http://%s:%s — %d models, providers configured: %s",
        args.host,
        args.port,
        len(runtime.catalog.models),
        ", ".join(configured) or "none (set <ID>_API_KEY or <ID>_BASE_URL)",
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=args.access_log,
        log_config=None,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
        # X-Forwarded-For is believed only from GATEWAYZ_TRUSTED_PROXIES (shared/auth.client_ip),
        # never from uvicorn's default of any local peer: layer 1 must see the real client.
        proxy_headers=False,
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatewayz", description="Gatewayz universal inference API")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run every function in one local server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--access-log", action="store_true", help="log every request (off: it costs throughput)"
    )
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one JSON object a line on stderr (time, level, logger, message, fields), for a log pipeline",
    )
    serve.set_defaults(run=_serve)

    sub.add_parser("migrate", help="apply infra/migrations to GATEWAYZ_DATABASE_URL").set_defaults(
        run=_migrate
    )
    sub.add_parser("reap-holds", help="expire credit holds that were never settled").set_defaults(
        run=_with_runtime(_reap)
    )

    sub.add_parser(
        "prune-holds", help="delete closed credit holds past GATEWAYZ_HOLD_RETENTION_DAYS (bounded batches)"
    ).set_defaults(run=_with_runtime(_prune))

    sub.add_parser(
        "probe", help="probe the offers of GATEWAYZ_PROBE_MODELS once; open and resolve incidents"
    ).set_defaults(run=_with_runtime(_probe))

    catalog = sub.add_parser("catalog", help="the model catalog").add_subparsers(dest="action", required=True)
    csync = catalog.add_parser(
        "sync",
        help="read providers' model lists and the price source; store the overlay every instance serves; "
        "print the diff",
    )
    csync.add_argument(
        "--providers",
        help="comma-separated provider ids (default: GATEWAYZ_CATALOG_SYNC_PROVIDERS, else every configured one)",
    )
    csync.add_argument(
        "--prices", help="an OpenRouter-format models JSON, by URL or file (default: GATEWAYZ_CATALOG_PRICES)"
    )
    csync.add_argument("--dry-run", action="store_true", help="print the diff, store nothing")
    csync.add_argument(
        "--output", help="also write the overlay as a catalog file (usable as GATEWAYZ_CATALOG_FILE)"
    )
    csync.set_defaults(run=_with_runtime(_catalog_sync))
    catalog.add_parser("diff", help="print the last sync's diff and the pinned models").set_defaults(
        run=_with_runtime(_catalog_diff)
    )
    pin = catalog.add_parser(
        "pin", help="pin a model's prices: syncs report upstream changes, never apply them"
    )
    pin.add_argument("model")
    pin.add_argument("--unpin", action="store_true", help="let syncs apply upstream prices again")
    pin.set_defaults(run=_with_runtime(_catalog_pin))

    rollup = sub.add_parser(
        "rollup", help="roll usage up by day (re-rolling from --since), prune raw records past retention"
    )
    rollup.add_argument("--since", help="reprocess from this UTC day (YYYY-MM-DD)")
    rollup.set_defaults(run=_with_runtime(_rollup))

    byok = sub.add_parser("byok", help="users' own provider keys").add_subparsers(
        dest="action", required=True
    )
    byok.add_parser(
        "reencrypt", help="re-encrypt every stored provider key under the newest GATEWAYZ_ENCRYPTION_KEYS key"
    ).set_defaults(run=_with_runtime(_byok_reencrypt))

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    create = users.add_parser("create", help="create a user and a first API key")
    create.add_argument("--email", required=True)
    create.add_argument("--credits", type=_amount, default=Decimal(0), help="initial credits in USD")
    create.add_argument(
        "--admin", action="store_true", help="an admin user (its key may hold the admin scope)"
    )
    create.add_argument("--plan", default="free", choices=["free", "pro", "enterprise"])
    create.add_argument(
        "--scopes",
        help="of its first key, comma-separated from inference,read,keys,billing,admin "
        "(default: every scope the role may hold: billing,inference,keys,read, and admin for --admin)",
    )
    create.set_defaults(run=_with_runtime(_users_create))

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    kcreate = keys.add_parser("create", help="create an API key for a user")
    kcreate.add_argument("--user", required=True)
    kcreate.add_argument("--name", default="default")
    kcreate.add_argument(
        "--scopes",
        help="comma-separated from inference,read,keys,billing,admin "
        "(default: every scope the user's role may hold)",
    )
    kcreate.set_defaults(run=_with_runtime(_keys_create))

    credits = sub.add_parser("credits", help="manage credits").add_subparsers(dest="action", required=True)
    grant = credits.add_parser("grant", help="grant (or, negative, claw back) credits")
    grant.add_argument("--user", required=True)
    grant.add_argument("--amount", type=_amount, required=True, help="USD; negative to claw back")
    grant.add_argument("--reason", required=True)
    grant.add_argument("--idempotency-key", help="a replay with the same key changes nothing")
    grant.set_defaults(run=_with_runtime(_credits_grant))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (CliError, ConfigError, ValueError, GatewayError) as exc:  # GatewayError: the database is down
        print(f"gatewayz: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
