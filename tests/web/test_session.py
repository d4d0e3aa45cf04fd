"""The sealed session cookie and CSRF tokens (shared/web/session.py)."""

from __future__ import annotations

import time

from shared.web.session import SESSION_SECONDS, Sealer


def test_a_sealed_session_opens_only_unchanged_unexpired_and_under_its_secret() -> None:
    sealer = Sealer("s" * 40)
    cookie, session = sealer.seal("gw_live_secret-key")
    assert "gw_live" not in cookie
    assert sealer.open(cookie) == session
    flipped = cookie[:10] + ("A" if cookie[10] != "A" else "B") + cookie[11:]
    assert sealer.open(flipped) is None
    assert Sealer("t" * 40).open(cookie) is None
    assert sealer.open(cookie, now=time.time() + SESSION_SECONDS + 1) is None
    assert sealer.open("") is None and sealer.open("not base64 !!") is None


def test_a_csrf_token_belongs_to_one_session() -> None:
    sealer = Sealer("s" * 40)
    _, one = sealer.seal("k1")
    _, two = sealer.seal("k1")
    token = sealer.csrf(one.sid)
    assert sealer.csrf_ok(one.sid, token)
    assert not sealer.csrf_ok(two.sid, token)
    assert not sealer.csrf_ok(one.sid, None) and not sealer.csrf_ok(None, token)
