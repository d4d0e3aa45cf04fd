"""Authentication of inference and read routes, behind one FastAPI dependency.

For now the only credential is the bootstrap admin token `GATEWAYZ_ADMIN_KEY`; the accounts
work replaces the body of `authenticate` with real keys without touching any route.
Keys arrive as `Authorization: Bearer <key>` (the OpenAI SDK) or `x-api-key` (the Anthropic SDK).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shared.app import runtime_of
from shared.errors import AuthenticationFailed


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "admin" for the bootstrap token
    user_id: str | None = None
    key_id: str | None = None


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


async def authenticate(request: Request) -> Principal:
    key = presented_key(request)
    if key is None:
        raise AuthenticationFailed(
            "Missing API key: send it as 'Authorization: Bearer <key>' (or 'x-api-key').",
            code="missing_api_key",
        )
    admin = runtime_of(request).settings.admin_key
    if admin is not None and hmac.compare_digest(key.encode(), admin.encode()):
        return Principal(kind="admin")
    raise AuthenticationFailed("Invalid API key.")


# The dependency every authenticated route declares: `principal: Authenticated`.
Authenticated = Annotated[Principal, Depends(authenticate)]
