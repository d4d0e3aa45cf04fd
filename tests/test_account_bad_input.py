"""Bad input on every account route: a 4xx in the OpenAI envelope, and nothing written (split from
test_account_routes.py, whose deployment fixtures and helpers it shares)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Account
from tests.test_account_routes import (  # the fixtures are used by name, as test parameters
    ALL_BUT_ADMIN,
    Deployment,
    assert_envelope,
    deployment,
    owner,
)

_FIXTURES = (deployment, owner)  # shared with test_account_routes.py; pytest finds them by name

# --- bad input ---------------------------------------------------------------------------------

BIG = b'{"name": "' + b"x" * (70 * 1024) + b'"}'
BAD_INPUT: list[tuple[str, str, str, dict[str, Any], int]] = [
    # (case, method, path, request arguments, status); {own} is a key of the caller's, {other} another user's
    ("create: unknown field", "POST", "/v1/keys", {"json": {"name": "a", "colour": "red"}}, 400),
    ("create: not json", "POST", "/v1/keys", {"content": b"{name: 1"}, 400),
    ("create: not an object", "POST", "/v1/keys", {"json": ["inference"]}, 400),
    ("create: NaN", "POST", "/v1/keys", {"content": b'{"spend_limits": {"day": NaN}}'}, 400),
    ("create: too large", "POST", "/v1/keys", {"content": BIG}, 413),
    ("create: empty name", "POST", "/v1/keys", {"json": {"name": "   "}}, 400),
    ("create: long name", "POST", "/v1/keys", {"json": {"name": "x" * 101}}, 400),
    ("create: control chars in name", "POST", "/v1/keys", {"json": {"name": "a\nb"}}, 400),
    ("create: name not a string", "POST", "/v1/keys", {"json": {"name": 5}}, 400),
    ("create: unknown scope", "POST", "/v1/keys", {"json": {"scopes": ["inference", "root"]}}, 400),
    ("create: no scopes", "POST", "/v1/keys", {"json": {"scopes": []}}, 400),
    ("create: scopes not a list", "POST", "/v1/keys", {"json": {"scopes": "inference"}}, 400),
    ("create: unknown environment", "POST", "/v1/keys", {"json": {"environment": "prod"}}, 400),
    ("create: past expiry", "POST", "/v1/keys", {"json": {"expires_at": "2020-01-01T00:00:00Z"}}, 400),
    ("create: bad expiry", "POST", "/v1/keys", {"json": {"expires_at": "next tuesday"}}, 400),
    ("create: numeric expiry", "POST", "/v1/keys", {"json": {"expires_at": 4102444800}}, 400),
    ("create: bad CIDR", "POST", "/v1/keys", {"json": {"ip_allowlist": ["10.0.0.300/8"]}}, 400),
    ("create: empty allowlist", "POST", "/v1/keys", {"json": {"ip_allowlist": []}}, 400),
    ("create: hostname in allowlist", "POST", "/v1/keys", {"json": {"ip_allowlist": ["example.com"]}}, 400),
    ("create: ftp origin", "POST", "/v1/keys", {"json": {"allowed_origins": ["ftp://example.com"]}}, 400),
    (
        "create: origin with path",
        "POST",
        "/v1/keys",
        {"json": {"allowed_origins": ["https://a.com/app"]}},
        400,
    ),
    ("create: wildcard origin", "POST", "/v1/keys", {"json": {"allowed_origins": ["https://*.a.com"]}}, 400),
    ("create: unknown model", "POST", "/v1/keys", {"json": {"allowed_models": ["acme/nope-1"]}}, 400),
    ("create: bad model pattern", "POST", "/v1/keys", {"json": {"allowed_models": ["gpt 4o!"]}}, 400),
    ("create: negative spend", "POST", "/v1/keys", {"json": {"spend_limits": {"day": "-1"}}}, 400),
    (
        "create: sub-picodollar",
        "POST",
        "/v1/keys",
        {"json": {"spend_limits": {"day": "0.0000000000001"}}},
        400,
    ),
    (
        "create: inexact float",
        "POST",
        "/v1/keys",
        {"content": b'{"spend_limits": {"month": 0.30000000000000004}}'},
        400,
    ),
    ("create: spend not a number", "POST", "/v1/keys", {"json": {"spend_limits": {"total": "ten"}}}, 400),
    ("create: spend a boolean", "POST", "/v1/keys", {"json": {"spend_limits": {"total": True}}}, 400),
    ("create: huge spend", "POST", "/v1/keys", {"json": {"spend_limits": {"total": "1e30"}}}, 400),
    ("create: huge exponent", "POST", "/v1/keys", {"json": {"spend_limits": {"day": "1e999999999"}}}, 400),
    (
        "create: tiny exponent",
        "POST",
        "/v1/keys",
        {"content": b'{"spend_limits": {"day": 1e-999999999}}'},
        400,
    ),
    (
        "create: too many digits",
        "POST",
        "/v1/keys",
        {"json": {"spend_limits": {"day": "1." + "0" * 30 + "1"}}},
        400,
    ),
    ("create: unknown period", "POST", "/v1/keys", {"json": {"spend_limits": {"week": "1"}}}, 400),
    ("create: zero rate", "POST", "/v1/keys", {"json": {"rate_limits": {"requests_per_minute": 0}}}, 400),
    (
        "create: rate as string",
        "POST",
        "/v1/keys",
        {"json": {"rate_limits": {"requests_per_minute": "5"}}},
        400,
    ),
    ("create: rate as float", "POST", "/v1/keys", {"json": {"rate_limits": {"concurrency": 1.5}}}, 400),
    ("create: rate above plan", "POST", "/v1/keys", {"json": {"rate_limits": {"concurrency": 1000}}}, 400),
    ("create: unknown rate", "POST", "/v1/keys", {"json": {"rate_limits": {"per_second": 1}}}, 400),
    ("patch: nothing", "PATCH", "/v1/keys/{own}", {"json": {}}, 400),
    ("patch: empty body", "PATCH", "/v1/keys/{own}", {}, 400),
    ("patch: unknown field", "PATCH", "/v1/keys/{own}", {"json": {"owner": "me"}}, 400),
    ("patch: null name", "PATCH", "/v1/keys/{own}", {"json": {"name": None}}, 400),
    ("patch: null scopes", "PATCH", "/v1/keys/{own}", {"json": {"scopes": None}}, 400),
    ("patch: null disabled", "PATCH", "/v1/keys/{own}", {"json": {"disabled": None}}, 400),
    ("patch: disabled as string", "PATCH", "/v1/keys/{own}", {"json": {"disabled": "yes"}}, 400),
    ("patch: past expiry", "PATCH", "/v1/keys/{own}", {"json": {"expires_at": "2001-01-01"}}, 400),
    (
        "patch: rate above plan",
        "PATCH",
        "/v1/keys/{own}",
        {"json": {"rate_limits": {"tokens_per_day": 10**9}}},
        400,
    ),
    ("patch: bad json", "PATCH", "/v1/keys/{own}", {"content": b'{"name": "a",}'}, 400),
    ("patch: unknown key", "PATCH", "/v1/keys/key_0000", {"json": {"name": "a"}}, 404),
    ("patch: another user's key", "PATCH", "/v1/keys/{other}", {"json": {"name": "a"}}, 404),
    ("rotate: negative grace", "POST", "/v1/keys/{own}/rotate", {"json": {"grace_seconds": -1}}, 400),
    ("rotate: grace too long", "POST", "/v1/keys/{own}/rotate", {"json": {"grace_seconds": 86401}}, 400),
    ("rotate: grace as string", "POST", "/v1/keys/{own}/rotate", {"json": {"grace_seconds": "5"}}, 400),
    ("rotate: unknown field", "POST", "/v1/keys/{own}/rotate", {"json": {"grace": 5}}, 400),
    ("rotate: unknown key", "POST", "/v1/keys/key_0000/rotate", {}, 404),
    ("rotate: another user's key", "POST", "/v1/keys/{other}/rotate", {}, 404),
    ("get: unknown key", "GET", "/v1/keys/key_0000", {}, 404),
    ("delete: unknown key", "DELETE", "/v1/keys/key_0000", {}, 404),
    ("delete: another user's key", "DELETE", "/v1/keys/{other}", {}, 404),
    ("credits: limit 0", "GET", "/v1/credits", {"params": {"limit": 0}}, 400),
    ("credits: limit too big", "GET", "/v1/credits", {"params": {"limit": 101}}, 400),
    ("credits: limit not a number", "GET", "/v1/credits", {"params": {"limit": "ten"}}, 400),
    ("credits: unknown cursor", "GET", "/v1/credits", {"params": {"cursor": "txn_nope"}}, 400),
    ("usage: days 0", "GET", "/v1/usage", {"params": {"days": 0}}, 400),
    ("usage: days too many", "GET", "/v1/usage", {"params": {"days": 91}}, 400),
    ("usage: limit too big", "GET", "/v1/usage", {"params": {"limit": 1000}}, 400),
    ("usage: unknown cursor", "GET", "/v1/usage", {"params": {"cursor": "req_nope"}}, 400),
]


@pytest.fixture(scope="module")
def stranger_key_id(deployment: Deployment) -> str:
    stranger = deployment.user("1", scopes=ALL_BUT_ADMIN)
    with deployment.http(stranger.key) as http:
        return str(http.get("/v1/keys").json()["data"][0]["id"])


@pytest.mark.parametrize(
    ("case", "method", "path", "kwargs", "status"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_is_a_4xx_and_writes_nothing(
    deployment: Deployment,
    owner: Account,
    stranger_key_id: str,
    case: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    with deployment.http(owner.key) as http:
        own = http.get("/v1/keys").json()["data"][0]
        before = deployment.counts()
        response = http.request(method, path.format(own=own["id"], other=stranger_key_id), **kwargs)
        error = assert_envelope(response, status)
        assert error["type"] == "invalid_request_error"
        assert deployment.counts() == before
        assert http.get(f"/v1/keys/{own['id']}").json() == own  # the caller's key is unchanged
