"""A NUL character in any text that reaches SQL is a 400 in the route's envelope, and changes
nothing (issue 10, defect 5: PostgreSQL cannot store it and answered 500; SQLite stored it). One
check in the store's parameter binding covers every route: these are the cases the probe found,
on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import Faulty, start_faulty
from tests.store.support import BACKENDS

NUL = "a%00b"  # in a URL
TEXT_NUL = "a\x00b"  # in a JSON body (sent as \u0000)


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Faulty]:
    with ExitStack() as stack:
        yield start_faulty(fakes, request.param, Path(tmp_path_factory.mktemp("nul")), stack)


def cases(user_id: str) -> list[tuple[str, str, bool, dict[str, Any] | None]]:
    """(method, path, as admin, JSON body)."""
    credit = {"amount": "1", "reason": TEXT_NUL}
    return [
        ("GET", f"/v1/credits?cursor={NUL}", False, None),
        ("GET", f"/v1/usage?cursor={NUL}", False, None),
        ("GET", f"/v1/keys/{NUL}", False, None),
        ("PATCH", f"/v1/keys/{NUL}", False, {"name": "renamed"}),
        ("DELETE", f"/v1/keys/{NUL}", False, None),
        ("POST", f"/v1/keys/{NUL}/rotate", False, {}),
        ("PUT", f"/v1/provider-keys/{NUL}", False, {"api_key": "sk-test-0123456789"}),
        ("DELETE", f"/v1/provider-keys/{NUL}", False, None),
        ("GET", f"/admin/users/{NUL}", True, None),
        ("PATCH", f"/admin/users/{NUL}", True, {"status": "active"}),
        ("POST", f"/admin/users/{NUL}/credits", True, {"amount": "1", "reason": "r"}),
        ("POST", f"/admin/users/{user_id}/credits", True, credit),
        ("GET", f"/admin/users?cursor={NUL}", True, None),
        *[("GET", f"/admin/audit?{name}={NUL}", True, None) for name in ("actor", "actor_type", "action")],
        *[("GET", f"/admin/audit?{name}={NUL}", True, None) for name in ("target", "target_type", "cursor")],
    ]


def test_a_nul_anywhere_is_a_400_and_changes_nothing(gw: Faulty) -> None:
    audit = gw.rows("SELECT COUNT(*) AS n FROM audit_log")[0]["n"]
    before = gw.balance_pico()
    statuses = {}
    for method, path, admin, body in cases(gw.account.user_id):
        response = gw.send(method, path, admin=admin, json=body)
        statuses[f"{method} {path}"] = response.status_code
        if response.status_code == 400:
            error = response.json()["error"]
            assert set(error) >= {"message", "type", "param", "code"} and error["request_id"]
            assert "\x00" not in response.text
    assert statuses == dict.fromkeys(statuses, 400)
    assert gw.rows("SELECT COUNT(*) AS n FROM audit_log")[0]["n"] == audit
    assert gw.invariants() == before
