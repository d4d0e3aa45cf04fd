"""A restricted key cannot lift its own restrictions (SPEC §5, §11 "users raising their own limits").

A key with the `keys` scope creates and changes keys of its user; whatever it creates, and any key
it changes as that key stands afterwards (itself included), must be at least as restricted as the
caller in every dimension: scopes, expiry, IP allowlist, allowed origins, allowed models, spend
limits per day / month / total, rate limits. A key rotated out (in its grace period) mints nothing.
Nor does a key multiply or reset its limits: the keys it mints while it has limits, and the key
that replaces it by rotation, count their spend and rate limits in its budget; a spend limit set
later counts what the budget already spent.
The whole matrix runs through the account routes, on SQLite and on the real PostgreSQL; every
refusal is a 403 in the OpenAI envelope naming the field, and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import openai
import pytest

from shared.store import now_text
from tests import test_account_routes as accounts
from tests.conftest import Account
from tests.fakes.openai_fake import OpenAIFake
from tests.test_account_routes import ALL_BUT_ADMIN, Deployment, assert_envelope

deployment = accounts.deployment  # the same fixture: a gateway per backend for this module
MANAGER_SCOPES = ["inference", "keys", "read"]
APP = "https://app.example.com"


def _in(days: int) -> str:
    return now_text(datetime.now(UTC) + timedelta(days=days))


@dataclass
class Dimension:
    """One restriction: the caller's own setting (as the operator made the key), bodies that would
    make a key less restricted than the caller (refused on create and on PATCH), and bodies that
    keep it within (accepted on both)."""

    caller: dict[str, Any]
    looser_create: list[dict[str, Any]]
    looser_patch: list[dict[str, Any]]
    within: list[dict[str, Any]]
    param: str
    headers: dict[str, str] = field(default_factory=dict)


def _dimensions() -> dict[str, Dimension]:
    expiry = _in(10)
    return {
        "scopes": Dimension(
            caller={},
            looser_create=[{"scopes": ["inference", "billing"]}, {"scopes": ["keys", "admin"]}],
            looser_patch=[{"scopes": ["billing"]}, {"scopes": ["read", "billing"]}],
            # No scopes: the caller's own (the default rule, shared.accounts.keys.default_scopes).
            within=[{"scopes": ["read"]}, {}, {"scopes": ["keys", "read"]}],
            param="scopes",
        ),
        "expires_at": Dimension(
            caller={"expires_at": expiry},
            looser_create=[{}, {"expires_at": _in(11)}],
            looser_patch=[{"expires_at": None}, {"expires_at": _in(11)}],
            within=[{"expires_at": expiry}, {"expires_at": _in(5)}],
            param="expires_at",
        ),
        "ip_allowlist": Dimension(
            caller={"ip_allowlist": ["127.0.0.0/8"]},
            looser_create=[
                {},
                {"ip_allowlist": ["0.0.0.0/0"]},
                {"ip_allowlist": ["127.0.0.1/32", "10.0.0.0/8"]},
                {"ip_allowlist": ["126.0.0.0/7"]},  # a supernet of the caller's
                {"ip_allowlist": ["::1/128"]},
            ],
            looser_patch=[{"ip_allowlist": None}, {"ip_allowlist": ["10.0.0.0/8"]}],
            within=[{"ip_allowlist": ["127.0.0.0/8"]}, {"ip_allowlist": ["127.0.0.1/32", "127.9.0.0/16"]}],
            param="ip_allowlist",
        ),
        "allowed_origins": Dimension(
            caller={"allowed_origins": [APP, "https://b.example.com"]},
            looser_create=[
                {},
                {"allowed_origins": ["https://evil.example.com"]},
                {"allowed_origins": [APP, "https://evil.example.com"]},
            ],
            looser_patch=[{"allowed_origins": None}, {"allowed_origins": ["https://c.example.com"]}],
            within=[{"allowed_origins": [APP]}, {"allowed_origins": ["https://B.example.com/", APP]}],
            param="allowed_origins",
            headers={"Origin": APP},
        ),
        "allowed_models": Dimension(
            caller={"allowed_models": ["openai/*", "anthropic/claude-sonnet-4"]},
            looser_create=[
                {},
                {"allowed_models": ["*"]},
                {"allowed_models": ["google/gemini-2.5-pro"]},
                {"allowed_models": ["anthropic/*"]},
                {"allowed_models": ["openai/gpt-4o", "anthropic/claude-sonnet-4*"]},
                {"allowed_models": ["?penai/gpt-4o"]},
            ],
            looser_patch=[{"allowed_models": None}, {"allowed_models": ["openai/*", "google/*"]}],
            within=[
                {"allowed_models": ["openai/*"]},
                {"allowed_models": ["gpt-4o", "anthropic/claude-sonnet-4"]},  # an alias, stored canonical
                {"allowed_models": ["openai/gpt-4o*", "openai/o[34]*"]},
            ],
            param="allowed_models",
        ),
        **{
            f"spend_limits.{period}": Dimension(
                caller={f"spend_limit_{period}": Decimal("1")},
                looser_create=[
                    {},
                    {"spend_limits": {period: "1.000000000001"}},
                    {
                        "spend_limits": {
                            other: "0.5" for other in ("day", "month", "total") if other != period
                        }
                    },
                ],
                looser_patch=[
                    {"spend_limits": None},
                    {"spend_limits": {period: None}},
                    {"spend_limits": {period: "2"}},
                ],
                within=[{"spend_limits": {period: "1"}}, {"spend_limits": {period: "0.25", "day": "0.1"}}],
                param=f"spend_limits.{period}",
            )
            for period in ("day", "month", "total")
        },
        "rate_limits": Dimension(
            caller={"rate_limits": {"requests_per_minute": 2, "concurrency": 1}},
            looser_create=[
                {},
                {"rate_limits": {"requests_per_minute": 3, "concurrency": 1}},
                {"rate_limits": {"requests_per_minute": 2}},  # no concurrency limit at all
                {"rate_limits": {"requests_per_minute": 1, "concurrency": 2}},
            ],
            looser_patch=[
                {"rate_limits": None},
                {"rate_limits": {"concurrency": None}},
                {"rate_limits": {"requests_per_minute": 20}},
            ],
            within=[
                {"rate_limits": {"requests_per_minute": 2, "concurrency": 1}},
                {"rate_limits": {"requests_per_minute": 1, "concurrency": 1, "tokens_per_minute": 10}},
            ],
            param="rate_limits",
        ),
    }


DIMENSIONS = _dimensions()


def _key(deployment: Deployment, key: str, key_id: str, **headers: str) -> dict[str, Any]:
    with deployment.http(key, **headers) as http:
        response = http.get(f"/v1/keys/{key_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _own_id(deployment: Deployment, account: Account, **headers: str) -> str:
    with deployment.http(account.key, **headers) as http:
        (own,) = http.get("/v1/keys").json()["data"]
    return str(own["id"])


def _refused(response: Any, param: str) -> None:
    error = assert_envelope(response, 403)
    assert error["code"] in ("restriction_not_allowed", "scope_not_allowed"), error
    assert error["param"].startswith(param), (error, param)


@pytest.mark.parametrize("name", sorted(DIMENSIONS))
def test_a_restricted_key_makes_and_changes_only_keys_as_restricted_as_itself(
    deployment: Deployment, name: str
) -> None:
    dim = DIMENSIONS[name]
    scopes = ["keys", "read"] if name == "scopes" else MANAGER_SCOPES
    caller = deployment.user("1", scopes=scopes, **dim.caller)
    caller_id = _own_id(deployment, caller, **dim.headers)
    base = {} if name == "scopes" else {"scopes": ["read"]}
    with deployment.http(caller.key, **dim.headers) as http:
        own_before = _key(deployment, caller.key, caller_id, **dim.headers)
        before = deployment.counts()
        # Create: a key without the restriction, or with a looser one, is refused and not made.
        for body in dim.looser_create:
            _refused(http.post("/v1/keys", json={**base, **body}), dim.param)
        assert deployment.counts() == before

        # A key within the caller's restriction is made, and keeps what was asked.
        made = []
        for body in dim.within:
            response = http.post("/v1/keys", json={**base, **body})
            assert response.status_code == 200, (body, response.text)
            made.append(response.json())
        other = made[-1]

        # PATCH of itself: no loosening, nothing changes.
        before = deployment.counts()
        for body in dim.looser_patch:
            _refused(http.patch(f"/v1/keys/{caller_id}", json=body), dim.param)
        # PATCH of another key of the user, made within: no loosening either.
        for body in dim.looser_patch:
            _refused(http.patch(f"/v1/keys/{other['id']}", json=body), dim.param)
        assert deployment.counts() == before
        assert _key(deployment, caller.key, caller_id, **dim.headers) == own_before
        assert {k: v for k, v in _key(deployment, caller.key, other["id"], **dim.headers).items()} == {
            k: v for k, v in other.items() if k != "key"
        }

        # Changes that keep a key within are fine, on the other key and on itself (tightening).
        assert http.patch(f"/v1/keys/{other['id']}", json=dim.within[0]).status_code == 200
        renamed = http.patch(f"/v1/keys/{other['id']}", json={"name": "still within"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "still within"
        # It may rotate a key within itself.
        assert http.post(f"/v1/keys/{other['id']}/rotate").status_code == 200
        tightened = http.patch(f"/v1/keys/{caller_id}", json=dim.within[-1])
        assert tightened.status_code == 200, tightened.text


def test_a_looser_key_of_the_same_user_is_out_of_a_restricted_keys_reach(deployment: Deployment) -> None:
    owner = deployment.user("1", scopes=ALL_BUT_ADMIN)  # unrestricted
    with deployment.http(owner.key) as http:
        limited = http.post(
            "/v1/keys", json={"scopes": MANAGER_SCOPES, "allowed_models": ["openai/*"]}
        ).json()
        wide = http.post("/v1/keys", json={"scopes": ["inference"], "ip_allowlist": ["10.0.0.0/8"]}).json()
    before = deployment.counts()
    with deployment.http(limited["key"]) as http:
        # Changing it (even its name) would leave it beyond the caller; rotating would hand out its
        # powers in a new secret.
        _refused(http.patch(f"/v1/keys/{wide['id']}", json={"name": "mine now"}), "allowed_models")
        _refused(http.patch(f"/v1/keys/{wide['id']}", json={"ip_allowlist": None}), "allowed_models")
        _refused(http.post(f"/v1/keys/{wide['id']}/rotate"), "allowed_models")
        assert deployment.counts() == before
        # Bringing it within the caller only takes power away: allowed. So is revoking.
        within = http.patch(f"/v1/keys/{wide['id']}", json={"allowed_models": ["openai/gpt-4o"]})
        assert within.status_code == 200, within.text
        assert http.delete(f"/v1/keys/{wide['id']}").json()["revoked"] is True


def test_only_an_unrestricted_key_makes_an_unrestricted_key(deployment: Deployment) -> None:
    owner = deployment.user("1", scopes=MANAGER_SCOPES)
    with deployment.http(owner.key) as http:
        free = http.post("/v1/keys", json={"scopes": MANAGER_SCOPES})
        assert free.status_code == 200, free.text
        unrestricted = free.json()
        assert unrestricted["expires_at"] is None and unrestricted["allowed_models"] is None
        capped = http.post("/v1/keys", json={"scopes": MANAGER_SCOPES, "spend_limits": {"total": "1"}}).json()
    with deployment.http(capped["key"]) as http:
        _refused(http.post("/v1/keys", json={"scopes": ["inference"]}), "spend_limits.total")


def test_the_probe_of_issue_10_a_restricted_key_cannot_free_itself(
    deployment: Deployment, openai_fake: OpenAIFake
) -> None:
    """A key with a spend limit, model allowlist, 2 requests a minute, an expiry and an IP
    allowlist, holding the `keys` scope: no unrestricted key, no self-PATCH to null, and the key
    still works as restricted afterwards."""
    restricted = deployment.user(
        "1",
        scopes=MANAGER_SCOPES,
        spend_limit_day=Decimal("0.5"),
        allowed_models=["openai/gpt-4o-mini"],
        rate_limits={"requests_per_minute": 2},
        expires_at=_in(1),
        ip_allowlist=["127.0.0.1/32"],
    )
    own_id = _own_id(deployment, restricted)
    before = deployment.counts()
    with deployment.http(restricted.key) as http:
        own = http.get(f"/v1/keys/{own_id}").json()
        assert assert_envelope(http.post("/v1/keys", json={"scopes": ["inference"]}), 403)["param"]
        nulls = {
            "expires_at": None,
            "ip_allowlist": None,
            "allowed_models": None,
            "spend_limits": None,
            "rate_limits": None,
        }
        assert assert_envelope(http.patch(f"/v1/keys/{own_id}", json=nulls), 403)["param"]
        assert http.get(f"/v1/keys/{own_id}").json() == own
    assert deployment.counts() == before
    with pytest.raises(openai.PermissionDeniedError) as caught:
        deployment.sdk(restricted.key).chat.completions.create(
            model="anthropic/claude-sonnet-4", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "model_not_allowed"
    assert openai_fake.requests == []


def test_a_key_in_its_rotation_grace_period_mints_nothing(deployment: Deployment) -> None:
    owner = deployment.user("1", scopes=MANAGER_SCOPES)
    own_id = _own_id(deployment, owner)
    with deployment.http(owner.key) as http:
        spare = http.post("/v1/keys", json={"scopes": ["read"]}).json()
        new = http.post(f"/v1/keys/{own_id}/rotate", json={"grace_seconds": 600}).json()
    before = deployment.counts()
    with deployment.http(owner.key) as http:  # the old secret, still valid for its grace period
        assert http.get("/v1/me").status_code == 200
        for response in (
            http.post("/v1/keys", json={"scopes": ["read"]}),
            http.post(f"/v1/keys/{spare['id']}/rotate"),
            http.post(f"/v1/keys/{new['id']}/rotate"),
        ):
            assert assert_envelope(response, 403)["code"] == "key_rotated_out"
    assert deployment.counts() == before
    with deployment.http(new["key"]) as http:  # its replacement may
        assert http.post("/v1/keys", json={"scopes": ["read"]}).status_code == 200


# --- budgets: minting and rotating never multiply or reset a key's limits -----------------------
CHEAP = "openai/gpt-4o-mini"
HELLO = [{"role": "user", "content": "hi"}]


def _spent(deployment: Deployment, *key_ids: str) -> int:
    """Picodollars charged to these keys' requests (their usage rows)."""
    marks = ", ".join(f":k{i}" for i in range(len(key_ids)))
    row = deployment.rows(
        f"SELECT COALESCE(-SUM(amount_pico), 0) AS spent FROM credit_transactions "
        f"WHERE type = 'usage' AND key_id IN ({marks})",
        {f"k{i}": key_id for i, key_id in enumerate(key_ids)},
    )[0]
    return int(row["spent"])


def _until_refused(deployment: Deployment, keys: list[str], tries: int = 40) -> str:
    """Requests through `keys` in turn until one is refused; the refusal's code."""
    for i in range(tries):
        try:
            deployment.sdk(keys[i % len(keys)]).chat.completions.create(
                model=CHEAP, messages=HELLO, max_tokens=16
            )
        except openai.APIStatusError as exc:
            return str(exc.code)
    raise AssertionError(f"none of {tries} requests was refused")


def _limit_for(requests: int) -> Decimal:
    """A total spend limit that a few requests of CHEAP with max_tokens=16 reach (their worst case
    each is ~$0.00003)."""
    return Decimal("0.00003") * requests


def test_a_key_with_a_spend_limit_shares_it_with_the_keys_it_mints(
    deployment: Deployment, openai_fake: OpenAIFake
) -> None:
    limit = _limit_for(6)
    parent = deployment.user("1", "enterprise", scopes=MANAGER_SCOPES, spend_limit_total=limit)
    parent_id = _own_id(deployment, parent)
    with deployment.http(parent.key) as http:
        child = http.post("/v1/keys", json={"scopes": ["inference"], "spend_limits": {"total": str(limit)}})
    assert child.status_code == 200, child.text
    assert child.json()["budget_key_id"] == parent_id
    assert _until_refused(deployment, [parent.key, child.json()["key"]]) == "key_spend_limit_exceeded"
    spent = _spent(deployment, parent_id, child.json()["id"])
    assert 0 < spent <= int(limit * 10**12)  # the two keys together, not each


def test_a_minted_key_shares_its_minters_rate_limit(deployment: Deployment, openai_fake: OpenAIFake) -> None:
    parent = deployment.user("1", scopes=MANAGER_SCOPES, rate_limits={"requests_per_minute": 2})
    with deployment.http(parent.key) as http:
        child = http.post(
            "/v1/keys", json={"scopes": ["inference"], "rate_limits": {"requests_per_minute": 2}}
        )
    assert child.status_code == 200, child.text
    deployment.sdk(parent.key).chat.completions.create(model=CHEAP, messages=HELLO, max_tokens=16)
    deployment.sdk(child.json()["key"]).chat.completions.create(model=CHEAP, messages=HELLO, max_tokens=16)
    for key in (parent.key, child.json()["key"]):
        with pytest.raises(openai.RateLimitError):
            deployment.sdk(key).chat.completions.create(model=CHEAP, messages=HELLO, max_tokens=16)


def test_rotating_a_key_resets_none_of_its_limits(deployment: Deployment, openai_fake: OpenAIFake) -> None:
    """A restricted key that rotates itself gets a new secret, not a new budget: its replacement
    is refused where the key was (spend), and goes on counting its minute (rate)."""
    spender = deployment.user("1", "enterprise", scopes=MANAGER_SCOPES, spend_limit_total=_limit_for(3))
    assert _until_refused(deployment, [spender.key]) == "key_spend_limit_exceeded"
    with deployment.http(spender.key) as http:
        replacement = http.post(f"/v1/keys/{_own_id(deployment, spender)}/rotate").json()
    assert _until_refused(deployment, [replacement["key"]], tries=1) == "key_spend_limit_exceeded"

    hasty = deployment.user("1", scopes=MANAGER_SCOPES, rate_limits={"requests_per_minute": 2})
    for _ in range(2):
        deployment.sdk(hasty.key).chat.completions.create(model=CHEAP, messages=HELLO, max_tokens=16)
    with deployment.http(hasty.key) as http:
        replacement = http.post(f"/v1/keys/{_own_id(deployment, hasty)}/rotate").json()
    with pytest.raises(openai.RateLimitError):
        deployment.sdk(replacement["key"]).chat.completions.create(model=CHEAP, messages=HELLO, max_tokens=16)


def test_a_spend_limit_set_later_counts_what_the_key_already_spent(
    deployment: Deployment, openai_fake: OpenAIFake
) -> None:
    owner = deployment.user("1", scopes=MANAGER_SCOPES)
    for _ in range(3):
        deployment.sdk(owner.key).chat.completions.create(model=CHEAP, messages=HELLO, max_tokens=16)
    own_id = _own_id(deployment, owner)
    spent = _spent(deployment, own_id)
    # What one more request reserves (its worst case): the hold of an earlier, identical one.
    worst = int(
        deployment.rows(
            "SELECT MAX(amount_pico) AS a FROM credit_holds WHERE user_id = :u", {"u": owner.user_id}
        )[0]["a"]
    )
    assert spent > 0 and worst > 0
    # One picodollar short of room for one more request after what was spent (a counter started
    # at the change would leave room for it).
    limit = str(Decimal(spent + worst - 1) / 10**12)
    with deployment.http(owner.key) as http:
        assert http.patch(f"/v1/keys/{own_id}", json={"spend_limits": {"total": limit}}).status_code == 200
    assert _until_refused(deployment, [owner.key], tries=1) == "key_spend_limit_exceeded"
