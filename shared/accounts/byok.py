"""Bring your own key (SPEC §4): users store their own provider keys, encrypted at rest.

Keys are encrypted with Fernet under `GATEWAYZ_ENCRYPTION_KEYS` (comma-separated, newest first):
new ciphertexts use the first key, any listed key decrypts (`MultiFernet`), so an operator rotates
by prepending a new key, running `reencrypt_all` and then dropping the old one. Only the last four
characters are ever shown; audit entries name the provider and those four characters, never the
key. Every change invalidates the key cache, so `KeyRecord.byok_providers` follows at once here
and within seconds elsewhere.

The pipeline asks `byok_key(rt, user_id, provider)` for the decrypted key of the provider it chose;
answers are cached per process for `BYOK_CACHE_TTL` seconds and dropped when the key-cache epoch
moves (any key, user or BYOK change on any instance).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.accounts.service import Actor, audit_step
from shared.billing.ledger import new_id
from shared.errors import GatewayError, InvalidRequest
from shared.providers import load_providers
from shared.store import now_text

if TYPE_CHECKING:
    from shared.runtime import Runtime

MIN_KEY_CHARS = 8
MAX_KEY_CHARS = 4096
BYOK_CACHE_TTL = 30.0  # seconds a decrypted key (or its absence) is reused by one process
_KEY_TEXT = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: it goes into a header
_KEY_AUTH = ("bearer", "x-api-key", "x-goog-api-key")  # styles that send a plain key


class EncryptionNotConfigured(GatewayError):
    status = 503
    type = "service_unavailable"
    anthropic_type = "api_error"
    default_code = "encryption_not_configured"


class ByokKeyUnreadable(GatewayError):
    """A stored key no configured encryption key can decrypt (an old key was dropped too early)."""

    status = 503
    type = "service_unavailable"
    anthropic_type = "api_error"
    default_code = "byok_key_unreadable"


# --- encryption --------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise EncryptionNotConfigured(
                f"GATEWAYZ_ENCRYPTION_KEYS entry {position} is not a Fernet key (32 url-safe base64 "
                "bytes, as `Fernet.generate_key()` makes); the operator must fix it."
            ) from None
    return MultiFernet(fernets)


def cipher(keys: Sequence[str]) -> MultiFernet:
    if not keys:
        raise EncryptionNotConfigured(
            "Provider keys cannot be stored: the operator must set GATEWAYZ_ENCRYPTION_KEYS "
            "(comma-separated Fernet keys, newest first)."
        )
    return _cipher(tuple(keys))


def encrypt(keys: Sequence[str], plaintext: str) -> str:
    """Encrypt under the newest key (the first)."""
    return cipher(keys).encrypt(plaintext.encode()).decode("ascii")


def decrypt(keys: Sequence[str], token: str) -> str:
    """Decrypt with whichever configured key encrypted it."""
    try:
        return cipher(keys).decrypt(token.encode("ascii")).decode()
    except InvalidToken:
        raise ByokKeyUnreadable(
            "A stored provider key cannot be decrypted with the configured GATEWAYZ_ENCRYPTION_KEYS; "
            "store the key again (or the operator must restore the key it was encrypted with)."
        ) from None


def reencrypt(keys: Sequence[str], token: str) -> str:
    """The same plaintext encrypted under the newest key (rotation)."""
    try:
        return cipher(keys).rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise ByokKeyUnreadable(
            "A stored provider key cannot be decrypted with any configured key."
        ) from None


def under_newest(keys: Sequence[str], token: str) -> bool:
    try:
        Fernet(keys[0]).decrypt(token.encode("ascii"))
    except InvalidToken:
        return False
    return True


# --- validation --------------------------------------------------------------------------------
def check_provider(provider: str) -> None:
    """A provider a user may bring a key for: a known row that authenticates with a plain API key
    and whose public URL the table fixes (`Provider.takes_byok`). A provider whose URL comes from
    the operator (`local`, a self-hosted server) takes none: the user's key would make the gateway
    call wherever the operator pointed it, its own network included."""
    row = load_providers().get(provider)
    if row is None:
        raise InvalidRequest(
            f"Unknown provider '{provider[:64]}'.", param="provider", code="unknown_provider"
        )
    if row.takes_byok:
        return
    if row.keyless or not (row.auth in _KEY_AUTH or row.auth.startswith("header:")):
        why = "does not authenticate with an API key"
    else:
        why = "has no fixed public URL (the operator configures where it is)"
    raise InvalidRequest(
        f"Provider '{provider}' {why}, so it takes no key of yours (BYOK).",
        param="provider",
        code="byok_not_supported",
    )


def check_api_key(api_key: str) -> str:
    key = api_key.strip()
    if not key:
        raise InvalidRequest("api_key must not be empty.", param="api_key")
    if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        raise InvalidRequest(
            f"api_key must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS} characters long.", param="api_key"
        )
    if not _KEY_TEXT.match(key):
        raise InvalidRequest(
            "api_key must be printable ASCII without spaces or line breaks.", param="api_key"
        )
    return key


# --- the store ---------------------------------------------------------------------------------
UPSERT = """
INSERT INTO provider_keys (id, user_id, provider, encrypted_key, last4, created_at, updated_at)
VALUES (:id, :user_id, :provider, :encrypted_key, :last4, :now, :now)
ON CONFLICT (user_id, provider) DO UPDATE
SET encrypted_key = excluded.encrypted_key, last4 = excluded.last4, updated_at = excluded.updated_at
RETURNING provider, last4, created_at, updated_at
"""
DELETE = "DELETE FROM provider_keys WHERE user_id = :user_id AND provider = :provider"


def view(row: dict[str, Any]) -> dict[str, Any]:
    """The public shape: never the key, only its last four characters."""
    return {
        "object": "provider_key",
        "provider": row["provider"],
        "last4": row["last4"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _forget(rt: Runtime, user_id: str, provider: str) -> None:
    rt.cache.get("byok", {}).pop((user_id, provider), None)


async def put_provider_key(
    rt: Runtime, user_id: str, provider: str, api_key: str, actor: Actor
) -> dict[str, Any]:
    """Store (or replace) the user's key for `provider`; returns the masked view."""
    check_provider(provider)
    key = check_api_key(api_key)
    encrypted = encrypt(rt.settings.encryption_keys, key)
    params = {
        "id": new_id("pk"),
        "user_id": user_id,
        "provider": provider,
        "encrypted_key": encrypted,
        "last4": key[-4:],
        "now": now_text(),
    }
    rows, _ = await rt.db.transaction(
        [
            (UPSERT, params),
            audit_step(actor, "provider_key.put", "user", user_id, {"provider": provider, "last4": key[-4:]}),
        ]
    )
    _forget(rt, user_id, provider)
    await rt.keys.invalidate()
    return view(rows[0])


async def list_provider_keys(rt: Runtime, user_id: str) -> list[dict[str, Any]]:
    rows = await rt.db.fetch(
        "SELECT provider, last4, created_at, updated_at FROM provider_keys WHERE user_id = :user_id "
        "ORDER BY provider",
        {"user_id": user_id},
    )
    return [view(r) for r in rows]


async def delete_provider_key(rt: Runtime, user_id: str, provider: str, actor: Actor) -> bool:
    """Delete the user's key for `provider`; False when there was none."""
    params = {"user_id": user_id, "provider": provider}
    stored = await rt.db.fetch_one(
        "SELECT last4 FROM provider_keys WHERE user_id = :user_id AND provider = :provider", params
    )
    if stored is None:
        return False
    audit = audit_step(
        actor, "provider_key.delete", "user", user_id, {"provider": provider, "last4": stored["last4"]}
    )
    await rt.db.transaction([(DELETE, params), audit])
    _forget(rt, user_id, provider)
    await rt.keys.invalidate()
    return True


async def byok_key(rt: Runtime, user_id: str, provider: str) -> str | None:
    """The user's own key for `provider`, decrypted; None when they stored none.

    Cached per process for BYOK_CACHE_TTL seconds and dropped when the key-cache epoch moves.
    Raises ByokKeyUnreadable (503) when the stored key cannot be decrypted with the configured
    GATEWAYZ_ENCRYPTION_KEYS (or EncryptionNotConfigured when none is set).
    """
    cache: dict[tuple[str, str], tuple[str | None, float, Any]] = rt.cache.setdefault("byok", {})
    epoch = rt.keys.epoch
    now = time.monotonic()
    entry = cache.get((user_id, provider))
    if entry is not None and now - entry[1] < BYOK_CACHE_TTL and entry[2] == epoch:
        return entry[0]
    row = await rt.db.fetch_one(
        "SELECT encrypted_key FROM provider_keys WHERE user_id = :user_id AND provider = :provider",
        {"user_id": user_id, "provider": provider},
    )
    value = None if row is None else decrypt(rt.settings.encryption_keys, row["encrypted_key"])
    cache[(user_id, provider)] = (value, now, epoch)
    return value


async def reencrypt_all(rt: Runtime, actor: Actor, batch: int = 500) -> int:
    """Move every stored key under the newest encryption key (after one was prepended to
    GATEWAYZ_ENCRYPTION_KEYS); returns how many rows changed. Safe to run while serving: a row
    changed meanwhile is left as it is (it was written under the newest key anyway)."""
    keys = rt.settings.encryption_keys
    cipher(keys)  # fail early and clearly when nothing is configured
    changed, cursor = 0, ""
    while True:
        rows = await rt.db.fetch(
            "SELECT id, encrypted_key FROM provider_keys WHERE id > :cursor ORDER BY id LIMIT :limit",
            {"cursor": cursor, "limit": batch},
        )
        if not rows:
            break
        cursor = rows[-1]["id"]
        steps = [
            (
                "UPDATE provider_keys SET encrypted_key = :new WHERE id = :id AND encrypted_key = :old",
                {"id": r["id"], "old": r["encrypted_key"], "new": reencrypt(keys, r["encrypted_key"])},
            )
            for r in rows
            if not under_newest(keys, r["encrypted_key"])
        ]
        if steps:
            await rt.db.transaction(steps)
            changed += len(steps)
    if changed:
        await rt.db.transaction(
            [audit_step(actor, "provider_key.reencrypt", "system", "byok", {"rows": changed})]
        )
    return changed
