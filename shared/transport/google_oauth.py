"""OAuth2 access tokens for Vertex AI, minted from a service account.

The service-account key (the JSON of `GOOGLE_VERTEX_CREDENTIALS`, or the file named by
`GOOGLE_APPLICATION_CREDENTIALS`) is loaded and validated by google-auth
(`service_account.Credentials.from_service_account_info`), whose signer signs the JWT-bearer
assertion (RS256, `iss` the account's email, `aud` its `token_uri`, scope cloud-platform) that the
token endpoint exchanges for an access token
(https://developers.google.com/identity/protocols/oauth2/service-account#httprest). The token is
cached until five minutes before it expires; from fifteen minutes before, the first request to
notice starts a refresh in the background and every request keeps using the current token, so no
request waits on the token endpoint except the very first. One refresh runs at a time.

The exchange goes out on the gateway's own async HTTP client, not through google-auth's
`Credentials.refresh()`: that call is synchronous, so it would block the event loop (and every
request on it) for the round trip to the token endpoint, or need a thread and google-auth's own
transport, outside the client's proxy, TLS and timeout handling (bench/vertex_token.py measures
the blocking). google-auth's async service-account credentials are private modules
(`google.oauth2._service_account_async`) in the pinned version. google-auth is imported on the
first mint only, never at a cold start.

A key that cannot be read or used is the operator's configuration error, not a crash: it is
logged once with its reason (never the key) and each Vertex offer fails over as a `connect`
failure, so a request with no other offer gets a 502 naming the provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import orjson

from shared.transport.errors import UpstreamError
from shared.transport.upstream import UpstreamClient, read_body

if TYPE_CHECKING:
    from google.oauth2.service_account import Credentials

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
EXPIRY_MARGIN = 300.0  # never use a token closer than this to its expiry
REFRESH_AHEAD = 900.0  # refresh in the background from this close to expiry
ASSERTION_LIFETIME = 3600  # the longest Google accepts

log = logging.getLogger("gatewayz.transport")


def has_google_credentials(env: Mapping[str, str]) -> bool:
    return bool(env.get("GOOGLE_VERTEX_CREDENTIALS") or env.get("GOOGLE_APPLICATION_CREDENTIALS"))


def load_service_account(env: Mapping[str, str]) -> tuple[Credentials, str]:
    """The account's google-auth credentials and its token endpoint. Raises `UpstreamError`
    (`connect`) with the reason when the key cannot be read or is not a usable service-account
    key; the reason names fields and parsers, never key material."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from google.auth.exceptions import GoogleAuthError
    from google.oauth2 import service_account

    source = "GOOGLE_VERTEX_CREDENTIALS"
    try:
        raw = env.get(source)
        if not raw:
            source = f"GOOGLE_APPLICATION_CREDENTIALS ({env.get('GOOGLE_APPLICATION_CREDENTIALS', '')})"
            raw = Path(env.get("GOOGLE_APPLICATION_CREDENTIALS", "")).read_text()
        info = orjson.loads(raw)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        if info.get("type") != "service_account":  # e.g. gcloud's `authorized_user` credentials
            raise ValueError(f"not a service-account key (its 'type' is {str(info.get('type'))[:40]!r})")
        if not isinstance(info.get("private_key", ""), str):
            # Checked here: google-auth's own message would quote the value.
            raise ValueError("its 'private_key' is not a PEM string")
        # google-auth requires `token_uri`; a key without one uses Google's endpoint, as before.
        token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
        credentials = service_account.Credentials.from_service_account_info({**info, "token_uri": token_uri})
        if not credentials.service_account_email or not isinstance(credentials.service_account_email, str):
            raise ValueError("its 'client_email' is empty")
        try:
            # A PEM key of another kind (EC) loads but cannot sign RS256: found here, once.
            credentials.signer.sign(b"probe")
        except TypeError:
            raise ValueError("its 'private_key' is not an RSA key") from None
    except (OSError, ValueError, TypeError, GoogleAuthError, UnsupportedAlgorithm) as exc:
        reason = str(exc) if not isinstance(exc, OSError) else exc.strerror or type(exc).__name__
        raise UpstreamError(
            None, f"the Google service account in {source} is unusable: {reason}", kind="connect"
        ) from None
    return credentials, token_uri


class GoogleTokens:
    def __init__(self, env: Mapping[str, str], http: UpstreamClient) -> None:
        self._env = env
        self._http = http
        self._account: tuple[Credentials, str] | None = None
        self._token = ""
        self._expires = 0.0  # time.monotonic() of expiry
        self._task: asyncio.Task[None] | None = None
        self._reported = ""  # the configuration error last logged (logged once, not per request)

    def account(self) -> tuple[Credentials, str]:
        """Loaded once, on the first mint; a failure is tried again by the next request (a key
        file mounted late, for instance)."""
        if self._account is None:
            try:
                self._account = load_service_account(self._env)
            except UpstreamError as exc:
                if exc.message != self._reported:
                    self._reported = exc.message
                    log.warning("Vertex offers cannot be called: %s", exc.message)
                raise
        return self._account

    async def token(self) -> str:
        left = self._expires - time.monotonic()
        if self._token and left > REFRESH_AHEAD:
            return self._token
        task = self._refresh()
        if self._token and left > EXPIRY_MARGIN:
            return self._token  # still good: the refresh lands for later requests
        await asyncio.shield(task)
        if not self._token or self._expires - time.monotonic() <= 0:
            raise UpstreamError(401, "no Vertex access token could be minted", kind="connect")
        return self._token

    def _refresh(self) -> asyncio.Task[None]:
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._task = asyncio.get_running_loop().create_task(self._mint())
            # A background refresh that fails is tried again by the next request; its error is
            # read here so that it is never reported as unretrieved.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def assertion(self) -> tuple[str, bytes]:
        """The token endpoint and the signed JWT-bearer assertion to exchange there
        (https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests)."""
        from google.auth import jwt

        credentials, token_uri = self.account()
        now = int(time.time())
        claims = {
            "iss": credentials.service_account_email,
            "scope": SCOPE,
            "aud": token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        # The signer's key id (the key's `private_key_id`) becomes the header's `kid`.
        return token_uri, jwt.encode(credentials.signer, claims)

    async def _mint(self) -> None:
        token_uri, assertion = self.assertion()
        body = urlencode({"grant_type": GRANT, "assertion": assertion.decode()}).encode()
        started = time.monotonic()
        resp = await self._http.post(
            token_uri,
            {"content-type": "application/x-www-form-urlencoded"},
            body,
            limits=self._http.call_timeout(10.0),
        )
        raw = await read_body(resp)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if resp.status != 200 or not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            why = data.get("error_description") or data.get("error") if isinstance(data, dict) else None
            raise UpstreamError(
                401 if resp.status < 500 else resp.status,
                f"the Google token endpoint refused the service account: {why or resp.status}",
            )
        self._token = data["access_token"]
        lifetime = data.get("expires_in")
        self._expires = started + (float(lifetime) if isinstance(lifetime, int | float) else 3600.0)
