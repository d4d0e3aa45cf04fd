"""OAuth2 access tokens for Vertex AI, minted from a service account.

The service-account key (the JSON of `GOOGLE_VERTEX_CREDENTIALS`, or the file named by
`GOOGLE_APPLICATION_CREDENTIALS`) signs a JWT (RS256, `iss` the account's email, `aud` its
`token_uri`, scope cloud-platform) that the token endpoint exchanges for an access token
(https://developers.google.com/identity/protocols/oauth2/service-account#httprest). The token is
cached until five minutes before it expires; from fifteen minutes before, the first request to
notice starts a refresh in the background and every request keeps using the current token, so no
request waits on the token endpoint except the very first. One refresh runs at a time. The
exchange goes out on the gateway's own HTTP client; pyjwt (already the gateway's JWT library)
signs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from shared.transport.errors import UpstreamError
from shared.transport.upstream import UpstreamClient, read_body

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
EXPIRY_MARGIN = 300.0  # never use a token closer than this to its expiry
REFRESH_AHEAD = 900.0  # refresh in the background from this close to expiry


def has_google_credentials(env: Mapping[str, str]) -> bool:
    return bool(env.get("GOOGLE_VERTEX_CREDENTIALS") or env.get("GOOGLE_APPLICATION_CREDENTIALS"))


class GoogleTokens:
    def __init__(self, env: Mapping[str, str], http: UpstreamClient) -> None:
        self._env = env
        self._http = http
        self._account: dict[str, Any] | None = None
        self._token = ""
        self._expires = 0.0  # time.monotonic() of expiry
        self._task: asyncio.Task[None] | None = None

    def account(self) -> dict[str, Any]:
        if self._account is None:
            raw = self._env.get("GOOGLE_VERTEX_CREDENTIALS")
            try:
                if not raw:
                    raw = Path(self._env.get("GOOGLE_APPLICATION_CREDENTIALS", "")).read_text()
                info = orjson.loads(raw)
            except (OSError, orjson.JSONDecodeError) as exc:
                raise UpstreamError(
                    None, f"the Google service account could not be read: {exc}", kind="connect"
                ) from None
            if not isinstance(info, dict) or info.get("type") != "service_account":
                raise UpstreamError(
                    None, "the Google credentials are not a service-account key", kind="connect"
                )
            self._account = info
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

    async def _mint(self) -> None:
        import jwt  # pyjwt with cryptography's RSA

        info = self.account()
        token_uri = info.get("token_uri") or DEFAULT_TOKEN_URI
        now = int(time.time())
        claims = {
            "iss": info.get("client_email"),
            "scope": SCOPE,
            "aud": token_uri,
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": info["private_key_id"]} if info.get("private_key_id") else None
        try:
            assertion = jwt.encode(claims, info.get("private_key", ""), algorithm="RS256", headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise UpstreamError(None, f"the service-account key cannot sign: {exc}", kind="connect") from None
        body = urlencode({"grant_type": GRANT, "assertion": assertion}).encode()
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
