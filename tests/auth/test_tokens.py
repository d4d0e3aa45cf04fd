"""`POST /auth/session` with tokens that must not verify, HS256 and ES256 (the project's JWKS), on the
`local` gateway and through Supabase Auth on the `remote` one: every one gets a 401 in the OpenAI
envelope and creates nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.accounts import identity
from tests.auth.support import KID, Gw, error_of, user_count
from tests.fakes.supabase_fake import ANON_KEY, SupabaseFake


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256_with(key: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def _bad_tokens(fake: SupabaseFake) -> dict[str, str]:
    now = int(time.time())
    good = fake.sign_hs256(fake.claims())
    head, payload, signature = good.split(".")
    forged_payload = _b64({**fake.claims(), "email": "attacker@example.com"})
    other_ec = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        fake.signing_keys[KID]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {
        "tampered payload": f"{head}.{forged_payload}.{signature}",
        "tampered signature": f"{head}.{payload}.{signature[:-4]}AAAA",
        "wrong secret": fake.sign_hs256(fake.claims(), secret="another-projects-secret-0123456789abcdef"),
        "expired": fake.sign_hs256(fake.claims(exp=now - 3600, iat=now - 7200)),
        "wrong audience": fake.sign_hs256(fake.claims(aud="anon")),
        "wrong issuer": fake.sign_hs256(fake.claims(iss="https://other-project.supabase.co/auth/v1")),
        "no sub": fake.sign_hs256({k: v for k, v in fake.claims().items() if k != "sub"}),
        "no exp": fake.sign_hs256({k: v for k, v in fake.claims().items() if k != "exp"}),
        "service role key": fake.sign_hs256({**fake.claims(), "role": "service_role"}),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(fake.claims())}.",
        "garbage": "not-a-jwt",
        "three dots of garbage": "a.b.c",
        "unknown kid": jwt.encode(fake.claims(), other_ec, algorithm="ES256", headers={"kid": "no-such-key"}),
        "known kid, other key": jwt.encode(fake.claims(), other_ec, algorithm="ES256", headers={"kid": KID}),
        # Algorithm confusion: HMAC keyed with the project's public key.
        "HS256 keyed with the public key": _hs256_with(
            public_pem, {"alg": "HS256", "typ": "JWT", "kid": KID}, fake.claims()
        ),
        "RS256 header on an EC key": f"{_b64({'alg': 'RS256', 'kid': KID, 'typ': 'JWT'})}.{payload}.{signature}",
        "ES512": f"{_b64({'alg': 'ES512', 'kid': KID})}.{payload}.{signature}",
    }


BAD_CASES = [
    "tampered payload",
    "tampered signature",
    "wrong secret",
    "expired",
    "wrong audience",
    "wrong issuer",
    "no sub",
    "no exp",
    "service role key",
    "alg none",
    "garbage",
    "three dots of garbage",
    "unknown kid",
    "known kid, other key",
    "HS256 keyed with the public key",
    "RS256 header on an EC key",
    "ES512",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_token_that_does_not_verify_gets_401_and_creates_nothing(
    local: Gw, supabase: SupabaseFake, case: str
) -> None:
    token = _bad_tokens(supabase)[case]
    before = user_count(local)
    response = local.session(token)
    assert response.status_code == 401, (case, response.text)
    error = error_of(response)
    assert error["type"] == "authentication_error"
    assert token not in response.text
    assert user_count(local) == before


# --- ES256 against the project's JWKS --------------------------------------------------------------


def test_es256_tokens_verify_against_the_cached_jwks(
    local: Gw, supabase: SupabaseFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches = supabase.jwks_fetches
    sub = str(uuid.uuid4())
    first = local.session(supabase.sign(supabase.claims(sub, "ec@example.com")))
    assert first.status_code == 200, first.text
    assert first.json()["created"] is True
    again = local.session(supabase.sign(supabase.claims(sub, "ec@example.com")))
    assert again.status_code == 200 and again.json()["user"]["id"] == first.json()["user"]["id"]
    assert supabase.jwks_fetches - fetches <= 1  # cached per process
    fetched = supabase.jwks_fetches

    # A key the set does not hold: 401, and no refetch storm.
    rotated = supabase.add_signing_key("fake-signing-key-2")
    for _ in range(3):
        assert (
            local.session(supabase.sign(supabase.claims(sub, "ec@example.com"), kid=rotated)).status_code
            == 401
        )
    assert supabase.jwks_fetches == fetched
    # Once the refetch interval has passed, a rotated-in key is picked up.
    monkeypatch.setattr(identity, "JWKS_REFETCH_AFTER", 0.0)
    rotated_in = local.session(supabase.sign(supabase.claims(sub, "ec@example.com"), kid=rotated))
    assert rotated_in.status_code == 200, rotated_in.text
    assert supabase.jwks_fetches == fetched + 1
    # Tampering with an ES256 token is caught.
    head, _, signature = supabase.sign(supabase.claims(sub, "ec@example.com")).split(".")
    forged = _b64({**supabase.claims(sub, "ec@example.com"), "sub": str(uuid.uuid4())})
    assert local.session(f"{head}.{forged}.{signature}").status_code == 401


# --- supabase-py: Supabase Auth verifies the token -------------------------------------------------


def test_supabase_auth_verifies_hs256_tokens_when_the_secret_is_not_configured(
    remote: Gw, supabase: SupabaseFake
) -> None:
    calls = supabase.user_fetches
    sub = str(uuid.uuid4())
    response = remote.session(supabase.sign_hs256(supabase.claims(sub, "remote@example.com")))
    assert response.status_code == 200, response.text
    assert response.json()["created"] is True and response.json()["api_key"]["key"].startswith("gw_live_")
    assert supabase.user_fetches == calls + 1
    sent = [r for r in supabase.requests if r.path == "/auth/v1/user"][-1]
    assert sent.headers["apikey"] == ANON_KEY
    later = remote.session(supabase.sign_hs256(supabase.claims(sub, "remote@example.com")))
    assert later.status_code == 200 and later.json()["api_key"] is None


@pytest.mark.parametrize("case", ["wrong secret", "expired", "tampered payload", "alg none", "garbage"])
def test_supabase_auth_refusals_are_401(remote: Gw, supabase: SupabaseFake, case: str) -> None:
    before = user_count(remote)
    response = remote.session(_bad_tokens(supabase)[case])
    assert response.status_code == 401, response.text
    assert user_count(remote) == before


def test_supabase_auth_says_whether_the_email_is_confirmed(remote: Gw, supabase: SupabaseFake) -> None:
    sub = str(uuid.uuid4())
    supabase.user_overrides[sub] = {"email_confirmed_at": None}
    # The token's own claims say nothing against it: the server's record decides.
    for token in (
        supabase.sign_hs256(supabase.claims(sub, "unconfirmed@example.com")),
        supabase.sign(supabase.claims(sub, "unconfirmed@example.com")),
    ):
        response = remote.session(token)
        assert response.status_code == 403 and error_of(response)["code"] == "email_not_verified"
    supabase.user_overrides[sub] = {"email_confirmed_at": "2026-11-29T00:00:00Z"}
    calls = supabase.user_fetches
    confirmed = remote.session(supabase.sign(supabase.claims(sub, "unconfirmed@example.com")))
    assert confirmed.status_code == 200 and confirmed.json()["created"] is True
    assert supabase.user_fetches == calls + 1  # ES256 verified locally, the email confirmed remotely
