"""A fake Supabase Auth server (GoTrue) on 127.0.0.1: the endpoints a backend uses to verify a
signed-in user's access token, and those of the browser sign-in flows (implicit flow: the session
comes back in the redirect's URL fragment).

- `GET /auth/v1/.well-known/jwks.json`: the project's public signing keys (asymmetric only; the
  legacy HS256 secret is never published) — https://supabase.com/docs/guides/auth/signing-keys
- `GET /auth/v1/user` with `apikey: <anon key>` and `Authorization: Bearer <access token>`: the
  server verifies the token itself (HS256 with the project's secret, or its signing keys) and
  answers with the user record, as supabase-py's `auth.get_user(jwt)` expects; a bad token gets
  GoTrue's 403 `bad_jwt`, a missing or wrong API key a 401.
- `POST /auth/v1/otp?redirect_to=<url>` with `apikey` and `{"email", "create_user", ...}`: "emails"
  a magic link (kept in `outbox`, as the project's mailer would send it) and answers `{}`; a bad
  email is GoTrue's 400 `validation_failed`, a second request within the window its 429
  `over_email_send_rate_limit` — https://supabase.com/docs/reference/api/auth-v1-otp
- `GET /auth/v1/verify?token=..&type=magiclink&redirect_to=<url>`: the link itself; 303 to
  `redirect_to#access_token=..&expires_at=..&expires_in=3600&refresh_token=..&token_type=bearer&type=magiclink`,
  or, for a used or unknown token, to `redirect_to#error=access_denied&error_code=otp_expired&...`
- `GET /auth/v1/authorize?provider=<p>&redirect_to=<url>`: OAuth; the fake stands in for the
  provider's consent screen too and signs in `oauth_email` at once (same fragment).
  https://supabase.com/docs/guides/auth/sessions/implicit-flow

Tests mint tokens with the fake's own keys (`sign`, `sign_hs256`), with the claims Supabase puts
in an access token (https://supabase.com/docs/guides/auth/jwt-fields).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.fakes.server import FakeServer

ANON_KEY = "sb_publishable_fake_anon_key_0123456789"


class SupabaseFake(FakeServer):
    def __init__(self, jwt_secret: str, anon_key: str = ANON_KEY) -> None:
        super().__init__()
        self.jwt_secret = jwt_secret
        self.anon_key = anon_key
        self.signing_keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.jwks_fetches = 0
        self.user_fetches = 0
        # sub → fields that override the user record built from the token (e.g. unconfirmed email)
        self.user_overrides: dict[str, dict[str, Any]] = {}
        self.outbox: list[dict[str, str]] = []  # magic links "emailed": {email, link, redirect_to}
        self.oauth_email = "oauth-user@example.com"
        self.oauth_providers = {"github", "google"}  # enabled in the fake project
        self.otp_window = 0.0  # seconds between two links to one address (GoTrue: 60 by default)
        self._links: dict[str, str] = {}  # magic-link token → email (used once)
        self._subjects: dict[str, str] = {}  # email → the user's id, stable across sign-ins
        self._last_sent: dict[str, float] = {}

    # --- keys and tokens ------------------------------------------------------------------------
    def add_signing_key(self, kid: str | None = None) -> str:
        kid = kid or str(uuid.uuid4())
        self.signing_keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, private in self.signing_keys.items():
            jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"], "ext": True})
        return {"keys": keys}

    @property
    def issuer(self) -> str:
        return f"{self.url}/auth/v1"

    def claims(
        self, sub: str | None = None, email: str | None = "user@example.com", **extra: Any
    ) -> dict[str, Any]:
        """An access token's claims as Supabase Auth issues them for a signed-in user."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "authenticated",
            "exp": now + 3600,
            "iat": now,
            "sub": sub or str(uuid.uuid4()),
            "email": email or "",
            "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {"email": email, "email_verified": True},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
        }
        claims.update(extra)
        return claims

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        kid = kid or next(iter(self.signing_keys))
        return jwt.encode(claims, self.signing_keys[kid], algorithm="ES256", headers={"kid": kid})

    def sign_hs256(self, claims: dict[str, Any], secret: str | None = None) -> str:
        return jwt.encode(claims, secret or self.jwt_secret, algorithm="HS256")

    def session_fragment(self, email: str, kind: str) -> str:
        """The URL fragment GoTrue's implicit flow ends with: a signed-in session for `email`."""
        sub = self._subjects.setdefault(email, str(uuid.uuid4()))
        claims = self.claims(sub, email)
        token = self.sign(claims) if self.signing_keys else self.sign_hs256(claims)
        return urlencode(
            {
                "access_token": token,
                "expires_at": claims["exp"],
                "expires_in": 3600,
                "refresh_token": secrets.token_urlsafe(12),
                "token_type": "bearer",
                "type": kind,
            }
        )

    # --- the server -----------------------------------------------------------------------------
    def _verify(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        if header.get("alg") == "HS256":
            key: Any = self.jwt_secret
        else:
            private = self.signing_keys.get(header.get("kid", ""))
            if private is None:
                raise jwt.InvalidTokenError("unknown kid")
            key = private.public_key()
        return jwt.decode(token, key, algorithms=[header["alg"]], audience="authenticated")

    def routes(self) -> list[web.RouteDef]:
        async def jwks(request: web.Request) -> web.Response:
            self.record(request, None)
            self.jwks_fetches += 1
            return web.json_response(self.jwks())

        async def user(request: web.Request) -> web.Response:
            self.record(request, None)
            self.user_fetches += 1
            if request.headers.get("apikey") != self.anon_key:
                return web.json_response({"message": "Invalid API key"}, status=401)
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            try:
                if scheme.lower() != "bearer":
                    raise jwt.InvalidTokenError("no bearer token")
                claims = self._verify(token)
            except jwt.InvalidTokenError as exc:
                body = {"code": 403, "error_code": "bad_jwt", "msg": f"invalid JWT: {exc}"}
                return web.json_response(body, status=403)
            now = "2026-11-29T00:00:00.000000Z"
            record: dict[str, Any] = {
                "id": claims["sub"],
                "aud": claims["aud"],
                "role": claims.get("role", "authenticated"),
                "email": claims.get("email", ""),
                "email_confirmed_at": now,
                "phone": "",
                "confirmed_at": now,
                "last_sign_in_at": now,
                "app_metadata": claims.get("app_metadata", {}),
                "user_metadata": claims.get("user_metadata", {}),
                "identities": [],
                "created_at": now,
                "updated_at": now,
                "is_anonymous": bool(claims.get("is_anonymous", False)),
            }
            record.update(self.user_overrides.get(claims["sub"], {}))
            return web.json_response(record)

        def error(status: int, code: str, msg: str) -> web.Response:
            return web.json_response({"code": status, "error_code": code, "msg": msg}, status=status)

        async def otp(request: web.Request) -> web.Response:
            body = await request.json()
            self.record(request, body)
            if request.headers.get("apikey") != self.anon_key:
                return web.json_response({"message": "Invalid API key"}, status=401)
            email = body.get("email") if isinstance(body, dict) else None
            if not isinstance(email, str) or "@" not in email.strip("@") or " " in email:
                return error(400, "validation_failed", "Unable to validate email address: invalid format")
            email = email.lower()
            if time.monotonic() - self._last_sent.get(email, -1e9) < self.otp_window:
                return error(
                    429,
                    "over_email_send_rate_limit",
                    "For security purposes, you can only request this after 60 seconds.",
                )
            self._last_sent[email] = time.monotonic()
            token = secrets.token_hex(16)
            self._links[token] = email
            redirect_to = request.query.get("redirect_to", self.url)
            query = urlencode({"token": token, "type": "magiclink", "redirect_to": redirect_to})
            self.outbox.append(
                {"email": email, "link": f"{self.url}/auth/v1/verify?{query}", "redirect_to": redirect_to}
            )
            return web.json_response({})

        async def verify(request: web.Request) -> web.Response:
            self.record(request, None)
            redirect_to = request.query.get("redirect_to", self.url)
            email = self._links.pop(request.query.get("token", ""), None)
            if email is None or request.query.get("type") != "magiclink":
                failure = {
                    "error": "access_denied",
                    "error_code": "otp_expired",
                    "error_description": "Email link is invalid or has expired",
                }
                raise web.HTTPSeeOther(f"{redirect_to}#{urlencode(failure)}")
            raise web.HTTPSeeOther(f"{redirect_to}#{self.session_fragment(email, 'magiclink')}")

        async def authorize(request: web.Request) -> web.Response:
            self.record(request, None)
            provider = request.query.get("provider", "")
            if provider not in self.oauth_providers:
                return error(400, "validation_failed", "Unsupported provider: provider is not enabled")
            redirect_to = request.query.get("redirect_to", self.url)
            raise web.HTTPSeeOther(f"{redirect_to}#{self.session_fragment(self.oauth_email, 'signup')}")

        return [
            web.get("/auth/v1/.well-known/jwks.json", jwks),
            web.get("/auth/v1/user", user),
            web.post("/auth/v1/otp", otp),
            web.get("/auth/v1/verify", verify),
            web.get("/auth/v1/authorize", authorize),
        ]
