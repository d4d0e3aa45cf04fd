"""The auth function: `POST /auth/session` exchanges a Supabase Auth access token for the Gatewayz
user and, on first sign-in (or when asked), a new API key (SPEC §5).

The token comes as `Authorization: Bearer <access token>` or as `{"access_token": ...}` in the
body. Optional body fields: `create_key` (mint a key on a later sign-in), `key_name`, `scopes`
(any of inference, read, keys, billing; default all four: a sign-in never grants admin) and
`expires_at` (when the minted key stops working: the dashboard's sign-in key ends with its session).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.accounts.identity import MAX_TOKEN_CHARS, SessionRequest, exchange
from shared.accounts.requests import FutureTime
from shared.app import function_app, json_body, runtime_of
from shared.auth import client_ip
from shared.errors import AuthenticationFailed, InvalidRequest
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented

router = APIRouter()


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    access_token: str | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_CHARS)
    create_key: bool = False
    key_name: str | None = Field(default=None, min_length=1, max_length=100)
    scopes: list[Literal["inference", "read", "keys", "billing"]] | None = Field(
        default=None, min_length=1, max_length=4
    )
    expires_at: FutureTime | None = None


def invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return InvalidRequest(f"{loc or 'body'}: {first.get('msg', 'invalid')}", param=loc or None)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "Send the Supabase access token as 'Authorization: Bearer <token>'.", code="invalid_token"
        )
    return token.strip()


@router.post("/auth/session")
@documented(
    "Exchange a Supabase Auth access token (Bearer, or access_token in the body) for the user and a key",
    request=SessionBody,
    response="accounts.Session",
    errors=(400, 401, 403, 409, 503),
    tag="auth",
)
async def session(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    empty = length == "0" or (length is None and "transfer-encoding" not in request.headers)
    data = {} if empty else await json_body(request)  # the token may come in the header alone
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        body = SessionBody.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None
    header_token = bearer(request)
    if header_token and body.access_token and header_token != body.access_token:
        raise InvalidRequest("Two different access tokens were sent (header and body).", param="access_token")
    token = header_token or body.access_token
    if token is None:
        raise AuthenticationFailed(
            "Missing Supabase access token: send 'Authorization: Bearer <token>' or {\"access_token\": ...}.",
            code="missing_token",
        )
    rt = runtime_of(request)
    wanted = SessionRequest(
        create_key=body.create_key,
        key_name=body.key_name,
        scopes=list(body.scopes) if body.scopes is not None else None,
        expires_at=body.expires_at,
    )
    return await exchange(rt, token, wanted, ip=client_ip(request, rt.settings))


app = function_app([router], title="Gatewayz auth")
handler = lambda_handler(app, "auth")
