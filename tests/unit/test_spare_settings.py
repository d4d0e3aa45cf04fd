"""GATEWAYZ_SPARE_HOLD_SECONDS (shared.billing.spares) and GATEWAYZ_SPARE_ADMISSION_SECONDS
(shared.limits.spares): on for servers, off by default where an instance is frozen between
invocations (it could not drop or give back its spare), 0 turns each off."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import ConfigError, Settings


def hold(settings: Settings) -> float:
    return settings.spare_hold_seconds


def admission(settings: Settings) -> float:
    return settings.limits.spare_seconds


SETTINGS = [("GATEWAYZ_SPARE_HOLD_SECONDS", hold, 2.0), ("GATEWAYZ_SPARE_ADMISSION_SECONDS", admission, 1.0)]


@pytest.mark.parametrize(("name", "read", "default"), SETTINGS)
@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({}, None),
        ({"AWS_LAMBDA_FUNCTION_NAME": "gatewayz-chat"}, 0.0),
        ({"VERCEL": "1"}, 0.0),
        ({"$": "0"}, 0.0),
        ({"$": "0.5"}, 0.5),
        ({"VERCEL": "1", "$": "1.5"}, 1.5),
    ],
)
def test_spare_seconds(
    name: str, read: Any, default: float, env: dict[str, str], seconds: float | None
) -> None:
    env = {name if k == "$" else k: v for k, v in env.items()}
    assert read(Settings.from_env(env)) == (default if seconds is None else seconds)


@pytest.mark.parametrize(("name", "read", "default"), SETTINGS)
@pytest.mark.parametrize("raw", ["-1", "soon", "7200"])
def test_a_bad_spare_time_is_refused(name: str, read: Any, default: float, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})
