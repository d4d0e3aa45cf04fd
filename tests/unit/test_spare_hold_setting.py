"""GATEWAYZ_SPARE_HOLD_SECONDS (shared.billing.spares): on for servers, off by default where an
instance is frozen between invocations (it could not drop its spare), 0 turns it off."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, Settings


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({}, 2.0),
        ({"AWS_LAMBDA_FUNCTION_NAME": "gatewayz-chat"}, 0.0),
        ({"VERCEL": "1"}, 0.0),
        ({"GATEWAYZ_SPARE_HOLD_SECONDS": "0"}, 0.0),
        ({"GATEWAYZ_SPARE_HOLD_SECONDS": "0.5"}, 0.5),
        ({"VERCEL": "1", "GATEWAYZ_SPARE_HOLD_SECONDS": "1"}, 1.0),
    ],
)
def test_spare_hold_seconds(env: dict[str, str], seconds: float) -> None:
    assert Settings.from_env(env).spare_hold_seconds == seconds


@pytest.mark.parametrize("raw", ["-1", "soon", "7200"])
def test_a_bad_spare_hold_time_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="GATEWAYZ_SPARE_HOLD_SECONDS"):
        Settings.from_env({"GATEWAYZ_SPARE_HOLD_SECONDS": raw})
