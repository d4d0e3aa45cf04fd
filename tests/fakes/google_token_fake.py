"""A fake of Google's OAuth2 token endpoint for service accounts
(https://developers.google.com/identity/protocols/oauth2/service-account#httprest).

`POST /token` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an RS256-signed
JWT `assertion`: the fake verifies the signature with the public key of the registered service
account (`iss`), the audience (this endpoint), the scope and the lifetime (at most an hour), as
Google does, and answers `{"access_token", "expires_in", "token_type"}` or Google's
`{"error": "invalid_grant", ...}`. `valid(token)` tells a Vertex fake whether a bearer token was
minted here and is unexpired.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson
from aiohttp import web

from tests.fakes.server import FakeServer

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def service_account(
    token_uri: str, email: str = "gateway@test-project.iam.gserviceaccount.com"
) -> tuple[dict[str, Any], Any]:
    """A service-account key JSON (a freshly generated RSA key) and its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return info, key.public_key()


class GoogleTokenFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.accounts: dict[str, Any] = {}  # client_email → public key
        self.issued: dict[str, float] = {}  # access token → expiry (time.time())
        self.lifetime = 3599

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/token", self.token)]

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def valid(self, token: str) -> bool:
        return self.issued.get(token, 0) > time.time()

    async def token(self, request: web.Request) -> web.Response:
        raw = await request.read()
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        self.record(request, form, raw)
        if request.content_type != "application/x-www-form-urlencoded":
            return _error("invalid_request", "Bad Request")
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _error("unsupported_grant_type", "Invalid grant_type")
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            public = self.accounts[claims.get("iss")]
            claims = jwt.decode(assertion, public, algorithms=["RS256"], audience=self.token_uri)
        except (jwt.PyJWTError, KeyError):
            return _error("invalid_grant", "Invalid JWT Signature.")
        if SCOPE not in str(claims.get("scope", "")).split() or claims["exp"] - claims["iat"] > 3600:
            return _error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.issued[token] = time.time() + self.lifetime
        return web.json_response({"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"})


def _error(error: str, description: str) -> web.Response:
    return web.Response(
        status=400,
        body=orjson.dumps({"error": error, "error_description": description}),
        content_type="application/json",
    )
