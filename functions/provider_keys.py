"""BYOK routes (SPEC §4, §5): `/v1/provider-keys`, under the `keys` scope.

`PUT /v1/provider-keys/{provider}` with `{"api_key": "..."}` stores (or replaces) the caller's own
key for a provider, encrypted; `GET /v1/provider-keys` lists them masked (last 4 only);
`DELETE /v1/provider-keys/{provider}` removes one. Logic lives in shared.accounts.byok.

The router belongs to the account function; until that function mounts it, this module exports
the router and a standalone app but no Lambda `handler` (nothing deploys it on its own).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.accounts.byok import delete_provider_key, list_provider_keys, put_provider_key
from shared.accounts.service import Actor
from shared.app import function_app, json_body, runtime_of
from shared.auth import KeyManager, Principal
from shared.errors import InvalidRequest, NotFound, PermissionDenied
from shared.openapi import documented

router = APIRouter()


class ProviderKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    api_key: str


def _owner(principal: Principal) -> tuple[str, Actor]:
    if principal.user_id is None:
        raise PermissionDenied("Provider keys belong to a user: use that user's API key.")
    return principal.user_id, Actor("user", principal.user_id, principal.ip)


@router.get("/v1/provider-keys")
@documented(
    "List your own provider keys (BYOK), masked",
    response="accounts.ProviderKeyList",
    errors=(401, 403),
    tag="keys",
)
async def list_keys(request: Request, principal: KeyManager) -> dict[str, Any]:
    user_id, _ = _owner(principal)
    return {"object": "list", "data": await list_provider_keys(runtime_of(request), user_id)}


@router.put("/v1/provider-keys/{provider}")
@documented(
    "Store or replace your own key for a provider (encrypted at rest)",
    request=ProviderKeyBody,
    response="accounts.ProviderKey",
    errors=(400, 401, 403),
    tag="keys",
)
async def put_key(provider: str, request: Request, principal: KeyManager) -> dict[str, Any]:
    user_id, actor = _owner(principal)
    data = await json_body(request)
    if not isinstance(data, dict):
        raise InvalidRequest('The request body must be a JSON object: {"api_key": "..."}.')
    try:
        body = ProviderKeyBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "body"
        # The message names the field, never the value (it may be a secret).
        raise InvalidRequest(f"{loc}: {first.get('msg', 'invalid')}", param=loc) from None
    return await put_provider_key(runtime_of(request), user_id, provider, body.api_key, actor)


@router.delete("/v1/provider-keys/{provider}")
@documented(
    "Delete your own key for a provider",
    response="accounts.ProviderKeyDeleted",
    errors=(401, 403, 404),
    tag="keys",
)
async def delete_key(provider: str, request: Request, principal: KeyManager) -> dict[str, Any]:
    user_id, actor = _owner(principal)
    if not await delete_provider_key(runtime_of(request), user_id, provider, actor):
        raise NotFound(f"No provider key is stored for '{provider[:64]}'.", param="provider")
    return {"object": "provider_key", "provider": provider, "deleted": True}


app = function_app([router], title="Gatewayz provider keys")
