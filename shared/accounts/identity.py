"""Supabase Auth identities (SPEC §5): verify a signed-in user's access token on the server and
exchange it for the Gatewayz user and a first API key.

A token is trusted only after its signature was checked here or by Supabase Auth itself:

- `HS256` (the legacy shared secret) with `SUPABASE_JWT_SECRET`, locally;
- `ES256` / `RS256` (Supabase's asymmetric signing keys) against the project's JWKS at
  `{SUPABASE_URL}/auth/v1/.well-known/jwks.json`, fetched without blocking the loop and cached per
  process (10 minutes, refetched at most every 30 s when an unknown `kid` shows up);
- an `HS256` token without the secret is sent to Supabase Auth (`GET /auth/v1/user` through
  supabase-py, which needs `SUPABASE_URL` and `SUPABASE_ANON_KEY` or `SUPABASE_SERVICE_ROLE_KEY`).

Local checks: signature, `exp` (30 s leeway for clock skew), `aud` == "authenticated", `iss` ==
`{SUPABASE_URL}/auth/v1` when the URL is configured, a `sub`; anonymous users (`is_anonymous`) and
the project's API keys (`role` anon / service_role) are refused. Any other algorithm (`none`
included) is refused before anything else is read from the token.

On first sign-in the account is created for the token's email, which must not be known to be
unverified: when a Supabase API key is configured the email and its confirmation come from
Supabase Auth's user record (`email_confirmed_at`), otherwise from the verified token (an `email`
claim, and `email_verified`, top-level or in `user_metadata`, not false).

An account that already exists for that email (made by an operator) is linked to the Supabase user
only when the email is known to be verified: Supabase Auth's record says it is confirmed, or the
token says `email_verified: true`; otherwise 403 `email_not_verified`, and nothing changes. (Supabase
lets a user edit their own `user_metadata`: an operator who lets users sign in before confirming
their email should set a Supabase API key, so that the server's record decides.)

Administrators are never served by this route: an admin-role account is not linked by sign-in and
gets no key from it (403 `admin_account`); its keys come from the CLI or the admin API, where the
admin scope rules apply. A session's keys never hold the admin scope (`SESSION_SCOPES`).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
import orjson

from shared.accounts.keys import SCOPES, default_scopes
from shared.accounts.service import Actor, KeySpec, audit_step
from shared.config import ConfigError
from shared.errors import AuthenticationFailed, GatewayError, PermissionDenied, error_for_status

if TYPE_CHECKING:
    from shared.runtime import Runtime

AUDIENCE = "authenticated"  # Supabase Auth's `aud` for signed-in users
ASYMMETRIC = frozenset({"ES256", "RS256"})  # what Supabase's signing keys use
LEEWAY = 30  # seconds of clock skew tolerated on exp / iat / nbf
JWKS_TTL = 600.0  # seconds a fetched JWKS is used (supabase-py caches it as long)
JWKS_REFETCH_AFTER = 30.0  # an unknown kid refetches the JWKS at most this often
MAX_TOKEN_CHARS = 16_384
MAX_JWKS_BYTES = 1 << 20
SESSION_SCOPES = frozenset(SCOPES - {"admin"})  # admin keys are never minted from a session
_EMAIL = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,200}$")


class InvalidToken(AuthenticationFailed):
    default_code = "invalid_token"


class AuthNotConfigured(GatewayError):
    status = 503
    type = "service_unavailable"
    anthropic_type = "api_error"
    default_code = "auth_not_configured"


class AuthUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    anthropic_type = "api_error"
    default_code = "auth_unavailable"


@dataclass(frozen=True, slots=True)
class SupabaseAuthConfig:
    url: str | None = None  # the project URL, e.g. https://<ref>.supabase.co (no trailing slash)
    jwt_secret: str | None = None
    api_key: str | None = None  # anon / publishable, or service role

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SupabaseAuthConfig:
        url = (env.get("SUPABASE_URL") or "").strip().rstrip("/") or None
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(
                "SUPABASE_URL must be the project's http(s) URL, e.g. https://<ref>.supabase.co"
            )
        secret = env.get("SUPABASE_JWT_SECRET") or None
        if secret is not None and len(secret.encode()) < 32:
            raise ConfigError(
                "SUPABASE_JWT_SECRET must be at least 32 characters (as Supabase's JWT secrets are)"
            )
        return cls(
            url=url,
            jwt_secret=secret,
            api_key=env.get("SUPABASE_ANON_KEY") or env.get("SUPABASE_SERVICE_ROLE_KEY") or None,
        )

    @property
    def issuer(self) -> str | None:
        return f"{self.url}/auth/v1" if self.url else None

    @property
    def jwks_url(self) -> str | None:
        return f"{self.url}/auth/v1/.well-known/jwks.json" if self.url else None

    @property
    def configured(self) -> bool:
        return bool(self.jwt_secret or self.url)


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified Supabase Auth user."""

    subject: str
    email: str | None
    email_verified: bool | None  # None: nothing says (enough to create an account, not to link one)
    anonymous: bool
    verified_by: str  # jwt_secret | jwks | supabase_auth


def _claims_identity(claims: Mapping[str, Any], verified_by: str) -> Identity:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 255:
        raise InvalidToken("The access token has no valid 'sub' claim.")
    if claims.get("role") in ("anon", "service_role"):
        raise InvalidToken("A Supabase API key is not a user's access token.")
    email = claims.get("email")
    metadata = claims.get("user_metadata")
    said = [
        claims.get("email_verified"),
        metadata.get("email_verified") if isinstance(metadata, dict) else None,
    ]
    # Only JSON booleans count (1 == True in Python, and "true" is not a boolean); a false wins.
    verified = False if any(v is False for v in said) else True if any(v is True for v in said) else None
    return Identity(
        subject=subject,
        email=email if isinstance(email, str) and email else None,
        email_verified=verified,
        anonymous=claims.get("is_anonymous") is True,
        verified_by=verified_by,
    )


def _user_identity(user: Any) -> Identity:
    """An identity from Supabase Auth's own user record (supabase_auth.types.User)."""
    return Identity(
        subject=str(user.id),
        email=user.email or None,
        email_verified=user.email_confirmed_at is not None,
        anonymous=bool(getattr(user, "is_anonymous", False)),
        verified_by="supabase_auth",
    )


class TokenVerifier:
    """One per process (kept in the runtime's cache): the JWKS cache and the supabase-py client."""

    def __init__(self, config: SupabaseAuthConfig) -> None:
        self.config = config
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._jwks_lock = asyncio.Lock()
        self._client: Any = None
        self._client_lock = asyncio.Lock()

    # --- verification -------------------------------------------------------------------------
    async def verify(self, token: str) -> Identity:
        if not self.config.configured:
            raise AuthNotConfigured(
                "Supabase Auth is not configured on this gateway: the operator must set "
                "SUPABASE_JWT_SECRET or SUPABASE_URL."
            )
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("The access token is too long.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("The access token is not a well-formed JWT.") from None
        alg = header.get("alg")
        if alg == "HS256":
            if self.config.jwt_secret:
                return self._verify_hs256(token)
            if self.config.url and self.config.api_key:
                return _user_identity(await self.supabase_user(token))
            raise InvalidToken(
                "This gateway cannot verify HS256 access tokens (it has neither SUPABASE_JWT_SECRET "
                "nor a Supabase API key).",
                code="unverifiable_token",
            )
        if alg in ASYMMETRIC:
            if not self.config.url:
                raise InvalidToken(
                    "This gateway cannot verify asymmetric access tokens (SUPABASE_URL is not set).",
                    code="unverifiable_token",
                )
            return await self._verify_jwks(token, header)
        raise InvalidToken("The access token's signing algorithm is not accepted.")

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=self.config.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired.", code="expired_token") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The access token is not for signed-in users (aud).") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The access token was issued by another Supabase project (iss).") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The access token's signature does not verify.") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("The access token does not verify.") from None
        return claims

    def _verify_hs256(self, token: str) -> Identity:
        assert self.config.jwt_secret
        claims = self._decode(token, self.config.jwt_secret.encode(), "HS256")
        return _claims_identity(claims, "jwt_secret")

    async def _verify_jwks(self, token: str, header: Mapping[str, Any]) -> Identity:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The access token names no signing key (kid).")
        key = await self.signing_key(kid)
        if key.algorithm_name != header.get("alg"):
            raise InvalidToken("The access token's algorithm does not match its signing key.")
        claims = self._decode(token, key.key, key.algorithm_name)
        return _claims_identity(claims, "jwks")

    # --- the project's JWKS -------------------------------------------------------------------
    async def signing_key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        age = time.monotonic() - self._fetched_at
        if key is not None and age < JWKS_TTL:
            return key
        if key is None and age < JWKS_REFETCH_AFTER:
            raise InvalidToken("The access token was signed with an unknown key.")
        async with self._jwks_lock:
            # Another request may have refreshed the set while this one waited.
            if time.monotonic() - self._fetched_at >= JWKS_REFETCH_AFTER:
                self._keys = await self._fetch_jwks()
                self._fetched_at = time.monotonic()
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("The access token was signed with an unknown key.")
        return key

    async def _fetch_jwks(self) -> dict[str, jwt.PyJWK]:
        url = self.config.jwks_url
        assert url
        headers = {"accept": "application/json"}
        if self.config.api_key:
            headers["apikey"] = self.config.api_key
        import httpx  # on the first asymmetric token only (SPEC §1: httpx serves JWKS fetches)

        raw = b""
        try:
            async with (
                httpx.AsyncClient(timeout=10) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                status = response.status_code
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_JWKS_BYTES:
                        break  # refused below: no need to read the rest
        except httpx.HTTPError:
            raise AuthUnavailable("Supabase Auth's signing keys could not be fetched; try again.") from None
        if status != 200 or len(raw) > MAX_JWKS_BYTES:
            raise AuthUnavailable(f"Supabase Auth's signing keys could not be fetched (HTTP {status}).")
        try:
            document = orjson.loads(raw)
            entries = document["keys"]
            assert isinstance(entries, list)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise AuthUnavailable("Supabase Auth's signing keys are not a JWKS document.") from None
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("kty") not in ("EC", "RSA") or entry.get("use", "sig") != "sig":
                continue  # never a symmetric key from a key set, never an encryption key
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue
            if key.algorithm_name in ASYMMETRIC:
                keys[entry["kid"]] = key
        return keys

    # --- Supabase Auth itself (supabase-py) ---------------------------------------------------
    async def _supabase(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    # Imported on first use only: supabase-py costs about a second to import.
                    import httpx
                    from supabase import AsyncClientOptions, acreate_client

                    assert self.config.url and self.config.api_key
                    # One client per process; no idle keep-alive connection is left behind (the
                    # runtime does not know this client), sign-ins are rare enough to connect anew.
                    http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
                    options = AsyncClientOptions(
                        auto_refresh_token=False, persist_session=False, httpx_client=http
                    )
                    try:
                        self._client = await acreate_client(
                            self.config.url, self.config.api_key, options=options
                        )
                    except Exception as exc:  # supabase-py refuses a malformed URL or key
                        await http.aclose()
                        raise AuthNotConfigured(  # the type only: a message could quote the key
                            "The Supabase client cannot be created from SUPABASE_URL and the API key "
                            f"({type(exc).__name__})."
                        ) from None
        return self._client

    async def supabase_user(self, token: str) -> Any:
        """Supabase Auth's record of the token's user (`GET /auth/v1/user`): the server verifies
        the token (signature, expiry, session) and answers with the user, or refuses."""
        from supabase_auth.errors import AuthApiError, AuthError, AuthRetryableError

        client = await self._supabase()
        try:
            response = await client.auth.get_user(token)
        except AuthRetryableError:
            raise AuthUnavailable("Supabase Auth could not be reached; try again.") from None
        except AuthApiError as exc:
            if exc.status >= 500:
                raise AuthUnavailable(f"Supabase Auth failed (HTTP {exc.status}); try again.") from None
            raise InvalidToken("Supabase Auth rejected the access token.") from None
        except AuthError:
            raise AuthUnavailable("Supabase Auth answered unexpectedly; try again.") from None
        if response is None or response.user is None:
            raise InvalidToken("Supabase Auth rejected the access token.")
        return response.user

    async def close(self) -> None:
        if self._client is not None:
            await self._client.auth.close()
            self._client = None


def verifier_of(rt: Runtime) -> TokenVerifier:
    """The process's verifier, built from the settings on first use."""
    verifier: TokenVerifier | None = rt.cache.get("supabase_auth")
    if verifier is None:
        try:
            config = SupabaseAuthConfig.from_env(rt.settings.env)
        except ConfigError as exc:
            raise AuthNotConfigured(str(exc)) from None
        verifier = rt.cache["supabase_auth"] = TokenVerifier(config)
    return verifier


# --- the exchange ------------------------------------------------------------------------------
@dataclass(slots=True)
class SessionRequest:
    create_key: bool = False
    key_name: str | None = None
    scopes: list[str] | None = None
    expires_at: str | None = None  # the minted key's end (validated by the route)


def _key_spec(request: SessionRequest, role: str) -> KeySpec:
    """A sign-in never grants `admin` (SESSION_SCOPES), whatever the user's role."""
    scopes = request.scopes if request.scopes is not None else default_scopes(role, SESSION_SCOPES)
    return KeySpec(
        name=request.key_name or "supabase-session", scopes=sorted(set(scopes)), expires_at=request.expires_at
    )


async def _confirmed_identity(verifier: TokenVerifier, identity: Identity, token: str) -> Identity:
    """The identity to create an account for: confirmed with Supabase Auth's user record when
    this gateway can ask it, else as the verified token says."""
    if identity.verified_by != "supabase_auth" and verifier.config.url and verifier.config.api_key:
        confirmed = _user_identity(await verifier.supabase_user(token))
        if confirmed.subject != identity.subject:
            raise InvalidToken("Supabase Auth returned another user for this access token.")
        identity = confirmed
    if identity.anonymous:
        raise PermissionDenied("Anonymous Supabase users cannot sign in.", code="anonymous_user")
    email = identity.email
    if email is None or not _EMAIL.match(email):
        raise PermissionDenied(
            "This Supabase user has no email address; sign in with a verified email to create an account.",
            code="email_required",
        )
    if identity.email_verified is False:
        raise PermissionDenied(
            "This Supabase user's email address is not confirmed yet; confirm it, then sign in again.",
            code="email_not_verified",
        )
    return identity


def _no_admin(role: str) -> None:
    """Sign-in never acts for an administrator: no link, no key (the admin scope rules live in the
    CLI and the admin API, which an operator uses)."""
    if role == "admin":
        raise PermissionDenied(
            "This is an administrator's account: it is not linked to a Supabase sign-in and gets no "
            "key from it. An operator issues administrators' keys with the CLI or the admin API.",
            code="admin_account",
        )


LINK = "UPDATE users SET auth_subject = :subject WHERE id = :user_id AND auth_subject IS NULL"


async def exchange(
    rt: Runtime, token: str, request: SessionRequest, *, ip: str | None = None
) -> dict[str, Any]:
    """Verify the token and return the session: the user, whether it was created or linked now,
    and a new API key (first sign-in, or when asked) shown this once — else `api_key` is None."""
    verifier = verifier_of(rt)
    identity = await verifier.verify(token)
    if identity.anonymous:
        raise PermissionDenied("Anonymous Supabase users cannot sign in.", code="anonymous_user")
    accounts = rt.accounts
    user = await accounts.find_user_by_subject(identity.subject)
    if user is not None:
        if user["status"] != "active":
            raise PermissionDenied("This account is suspended.", code="account_suspended")
        key = None
        if request.create_key:
            _no_admin(user["role"])
            key = await accounts.create_key(
                user["id"], _key_spec(request, user["role"]), Actor("user", user["id"], ip)
            )
        return _session(user, key, created=False, linked=False)

    # First sign-in: an account for the verified email, or the link to an existing one.
    identity = await _confirmed_identity(verifier, identity, token)
    assert identity.email is not None
    existing = await rt.db.fetch_one(
        "SELECT id, role, status, auth_subject FROM users WHERE email = :email",
        {"email": identity.email.strip().lower()},
    )
    if existing is not None:
        if existing["auth_subject"] is not None:
            raise error_for_status(
                409,
                "This email address belongs to an account linked to another Supabase user.",
                code="account_conflict",
            )
        if identity.email_verified is not True:
            raise PermissionDenied(
                "An account already exists for this email address: it is linked to a Supabase user "
                "only when the sign-in says the address is verified (email_verified: true). Confirm "
                "the email address with Supabase Auth, then sign in again.",
                code="email_not_verified",
            )
        _no_admin(existing["role"])
        if existing["status"] != "active":
            raise PermissionDenied("This account is suspended.", code="account_suspended")
        return await _link(rt, existing["id"], existing["role"], identity, request, ip)
    actor = Actor("user", f"supabase:{identity.subject}", ip)
    try:
        user, full_key = await accounts.create_user(
            identity.email, actor=actor, auth_subject=identity.subject, key=_key_spec(request, "user")
        )
    except Exception:
        # A concurrent first sign-in of the same user won the race: that is a later sign-in.
        raced = await accounts.find_user_by_subject(identity.subject)
        if raced is None:
            raise
        return _session(raced, None, created=False, linked=False)
    (key_row,) = await accounts.list_keys(user["id"])
    return _session(user, {**key_row, "key": full_key}, created=True, linked=False)


async def _link(
    rt: Runtime, user_id: str, role: str, identity: Identity, request: SessionRequest, ip: str | None
) -> dict[str, Any]:
    """Link an account created by an operator for this email to the Supabase user, with the
    first key of that person's own."""
    actor = Actor("user", user_id, ip)
    full_key, key_steps = rt.accounts.key_steps(user_id, _key_spec(request, role), actor)
    await rt.db.transaction(
        [
            (LINK, {"subject": identity.subject, "user_id": user_id}),
            audit_step(
                actor,
                "user.link",
                "user",
                user_id,
                {"auth_subject": identity.subject, "verified_by": identity.verified_by},
            ),
            *key_steps,
        ]
    )
    await rt.keys.invalidate()
    key_id = key_steps[0][1]["key_id"]
    user = await rt.accounts.get_user(user_id)
    key = {**await rt.accounts.get_key(user_id, key_id), "key": full_key}
    return _session(user, key, created=False, linked=True)


def _session(
    user: dict[str, Any], key: dict[str, Any] | None, *, created: bool, linked: bool
) -> dict[str, Any]:
    return {"object": "auth.session", "user": user, "created": created, "linked": linked, "api_key": key}
