"""What operators do with the catalog sync through the admin function: read the last sync's diff,
pin a model's prices (a sync then reports that model's upstream price changes without applying
them) or unpin it. Pins are audited like every admin change."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from shared.accounts.service import audit_step
from shared.auth import Principal
from shared.catalog.overlay import last_diff, set_pin
from shared.errors import ModelNotFound
from shared.runtime import Runtime
from shared.views.admin import admin_actor


class CatalogPin(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    pinned: bool


async def diff(rt: Runtime) -> dict[str, Any]:
    return await last_diff(rt)


async def pin(rt: Runtime, principal: Principal, body: CatalogPin) -> dict[str, Any]:
    model = rt.catalog.resolve(body.model)
    if model is None:
        raise ModelNotFound(f"The model '{body.model}' is not in the catalog", param="model")
    actor = admin_actor(principal)
    audit = audit_step(actor, "catalog.pin" if body.pinned else "catalog.unpin", "model", model.id, {})
    await set_pin(rt.db, model.id, body.pinned, actor.id or actor.type, (audit,))
    return {"model": model.id, "pinned": body.pinned}
