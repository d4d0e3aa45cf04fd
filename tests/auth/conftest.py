"""Fixtures of the `POST /auth/session` suites: a fake Supabase Auth server and two gateways on
loopback, each with its own SQLite file:
- `local`: SUPABASE_JWT_SECRET (HS256 verified here) + SUPABASE_URL (issuer check, JWKS for ES256);
- `remote`: SUPABASE_URL + SUPABASE_ANON_KEY and no secret, so HS256 tokens are verified by Supabase
  Auth itself through supabase-py (`GET /auth/v1/user`), and first sign-ins confirm the email there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.auth.support import KID, SECRET, Gw, _start
from tests.fakes.server import FakeServer
from tests.fakes.supabase_fake import ANON_KEY, SupabaseFake


@pytest.fixture(scope="module")
def supabase() -> Iterator[SupabaseFake]:
    fake = SupabaseFake(SECRET).start()
    fake.add_signing_key(KID)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def local(
    fakes: dict[str, FakeServer], supabase: SupabaseFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gw]:
    gw = _start(
        fakes, tmp_path_factory.mktemp("auth-local"), SUPABASE_JWT_SECRET=SECRET, SUPABASE_URL=supabase.url
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def remote(
    fakes: dict[str, FakeServer], supabase: SupabaseFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gw]:
    gw = _start(
        fakes, tmp_path_factory.mktemp("auth-remote"), SUPABASE_URL=supabase.url, SUPABASE_ANON_KEY=ANON_KEY
    )
    yield gw
    gw.stop()
