"""Authentication and key restrictions, behind one FastAPI dependency per scope (SPEC §5).

Keys arrive as `Authorization: Bearer <key>` (the OpenAI SDK) or `x-api-key` (the Anthropic SDK).
A user key must be live (not revoked, not past a rotation's grace period, not expired), enabled,
belong to an active user, carry the route's scope, and pass its IP and origin restrictions. The
bootstrap `GATEWAYZ_ADMIN_KEY` opens the admin routes only: it has no user to bill.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from shared.accounts.keys import KeyRecord
from shared.app import client_ip, presented_key, runtime_of
from shared.errors import AuthenticationFailed, PermissionDenied
from shared.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "admin" (the bootstrap token), "key", or "anonymous" (layer 3, when enabled)
    key: KeyRecord | None = None
    ip: str | None = None

    @property
    def user_id(self) -> str | None:
        return self.key.user_id if self.key else None

    @property
    def key_id(self) -> str | None:
        return self.key.key_id if self.key else None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin" or (
            self.key is not None and self.key.role == "admin" and "admin" in self.key.scopes
        )


def request_key(request: Request) -> str | None:
    return presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))


def request_origin(request: Request) -> str | None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return None


async def authenticate(request: Request, scope: str) -> Principal:
    rt = runtime_of(request)
    key = request_key(request)
    if key is None:
        if scope == "inference" and rt.settings.limits.anonymous:
            return Principal(
                kind="anonymous", ip=client_ip(request, rt.settings)
            )  # layer 3: free models only
        raise AuthenticationFailed(
            "Missing API key: send it as 'Authorization: Bearer <key>' (or 'x-api-key').",
            code="missing_api_key",
        )
    try:
        return await _verify(request, rt, key, scope)
    except AuthenticationFailed:
        # Brute force: a rejected key spends the caller IP's small budget of failed authentications.
        await rt.limiter.auth_failed(client_ip(request, rt.settings) or "unknown")
        raise


async def _verify(request: Request, rt: Runtime, key: str, scope: str) -> Principal:
    admin = rt.settings.admin_key
    if admin is not None and hmac.compare_digest(key.encode(), admin.encode()):
        if scope != "admin":
            raise PermissionDenied("The bootstrap admin key opens admin routes only; use a user's API key.")
        return Principal(kind="admin", ip=client_ip(request, rt.settings))
    record = await rt.keys.lookup(key)
    if record is None:
        raise AuthenticationFailed("Invalid API key.")
    now = datetime.now(UTC)
    if record.revoked_at is not None and record.revoked_at <= now:
        raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
    if record.expires_at is not None and record.expires_at <= now:
        raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
    if record.disabled:
        raise PermissionDenied("This API key is disabled.", code="api_key_disabled")
    if record.user_status != "active":
        raise PermissionDenied("This account is suspended.", code="account_suspended")
    if scope not in record.scopes or (scope == "admin" and record.role != "admin"):
        raise PermissionDenied(f"This API key lacks the '{scope}' scope.", code="insufficient_scope")
    ip = client_ip(request, rt.settings)
    if not record.ip_allowed(ip):
        raise PermissionDenied("This API key may not be used from this IP address.", code="ip_not_allowed")
    if not record.origin_allowed(request_origin(request)):
        raise PermissionDenied("This API key may not be used from this origin.", code="origin_not_allowed")
    return Principal(kind="key", key=record, ip=ip)


def require(scope: str) -> object:
    async def dependency(request: Request) -> Principal:
        return await authenticate(request, scope)

    dependency.__name__ = f"require_{scope}"
    return Depends(dependency)


# What routes declare: `principal: Inference`, `principal: Reader`, ...
Inference = Annotated[Principal, require("inference")]
Reader = Annotated[Principal, require("read")]
KeyManager = Annotated[Principal, require("keys")]
Billing = Annotated[Principal, require("billing")]
Admin = Annotated[Principal, require("admin")]


def require_cron(request: Request) -> None:
    """Scheduled routes (Vercel crons) answer only `Authorization: Bearer $CRON_SECRET`, Vercel's
    own convention; without the secret configured they refuse every call."""
    secret = os.environ.get("CRON_SECRET", "")
    given = request_key(request) or ""
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        raise AuthenticationFailed("This job runs on the operator's schedule only.")
