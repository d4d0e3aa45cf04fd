"""The dashboard's session cookie and CSRF tokens.

The session is stateless (a function instance keeps nothing between requests): the cookie holds
the API key the user signed in with, sealed with AES-GCM under a key derived from the gateway's
key secret, so it can be neither read nor forged by the browser or anyone who sees it at rest.
Every page authenticates that key again through the JSON API, so a revoked, disabled or expired
key (or a suspended user) ends the session at the next page.

CSRF: every form carries a token bound to the session (an HMAC of its random id), checked on
every state-changing request; before sign-in, the sign-in form's token is bound to a random
pre-session cookie instead (login CSRF). The cookies are HttpOnly, Secure and SameSite=Strict.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "gz_session"
PRESESSION_COOKIE = "gz_presession"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Session:
    api_key: str
    sid: str  # random, per sign-in: what the CSRF token is bound to
    expires: int
    minted: str | None = None  # the id of a key made for this session (Supabase sign-in): revoked at sign-out


class Sealer:
    """Seals and opens session cookies and makes CSRF tokens, from the gateway's key secret."""

    def __init__(self, secret: str) -> None:
        root = hashlib.sha256(b"gatewayz web session\0" + secret.encode()).digest()
        self._aead = AESGCM(hashlib.sha256(root + b"\0seal").digest())
        self._mac = hashlib.sha256(root + b"\0csrf").digest()

    def seal(self, api_key: str, now: float | None = None, minted: str | None = None) -> tuple[str, Session]:
        session = Session(api_key, os.urandom(16).hex(), int(now or time.time()) + SESSION_SECONDS, minted)
        nonce = os.urandom(12)
        fields = {"k": session.api_key, "s": session.sid, "e": session.expires}
        plain = orjson.dumps({**fields, "m": minted} if minted else fields)
        sealed = nonce + self._aead.encrypt(nonce, plain, SESSION_COOKIE.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("="), session

    def open(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged, damaged or expired."""
        if not cookie or len(cookie) > 2048:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            plain = self._aead.decrypt(raw[:12], raw[12:], SESSION_COOKIE.encode())
            data = orjson.loads(plain)
            minted = data.get("m")
            session = Session(str(data["k"]), str(data["s"]), int(data["e"]), str(minted) if minted else None)
        except (ValueError, InvalidTag, KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
            return None
        return session if session.expires > (now or time.time()) else None

    def csrf(self, binding: str) -> str:
        """The CSRF token of a session id (or of a pre-session cookie, prefixed `pre:`)."""
        return hmac.new(self._mac, binding.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(self.csrf(binding), token)
