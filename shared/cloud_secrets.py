"""Settings kept in AWS Secrets Manager or SSM Parameter Store, exported before the app starts.

At a Lambda cold start `infra/lambda/secrets.sh` runs `python3 -m shared.cloud_secrets` and
`eval`s what it prints: `export NAME='value'` lines, so that every entry point (the Mangum
handlers, uvicorn under the Web Adapter, the scheduled jobs) reads these settings from the
environment like any other (SPEC §1, `shared/config.py`). Two sources, either or both:

- `GATEWAYZ_SECRETS_ARN`: one Secrets Manager secret holding a JSON object of variables
  (`{"OPENROUTER_API_KEY": "sk-or-...", "STRIPE_SECRET_KEY": "sk_live_..."}`);
- `GATEWAYZ_SSM_PATH`: an SSM Parameter Store path (`/gatewayz/prod/`), one parameter per
  variable named after it (`/gatewayz/prod/OPENROUTER_API_KEY`, a SecureString is decrypted).
  Where both name a variable, the secret wins.

Both are read through Powertools `parameters` (boto3's credential chain and region: on Lambda,
the function's role). A variable that already has a non-empty value in the environment wins
(the function's configuration is the operator's last word); names the runtime owns (`AWS_*`,
`LAMBDA_*`, `PATH`, ...) are refused. Any failure stops the cold start with exit code 1: a gateway
without its keys should fail loudly, not serve errors. Nothing printed on stderr carries a value.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Mapping

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_PROTECTED_PREFIXES = ("AWS_", "LAMBDA_", "_")
_PROTECTED = frozenset({"PATH", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LANG", "TZ", "HOME"})


def exports(secret: Mapping[str, object], env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The shell `export` lines for `secret`, and a warning (no value in it) per refused entry."""
    lines: list[str] = []
    warnings: list[str] = []
    for name, value in sorted(secret.items()):
        if not _NAME.match(name) or name.startswith(_PROTECTED_PREFIXES) or name in _PROTECTED:
            warnings.append(f"refused variable name {name!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            warnings.append(f"{name}: value must be a string or a number")
            continue
        if env.get(name):
            continue  # the function's own configuration wins
        lines.append(f"export {name}={shlex.quote(str(value))}")
    return lines, warnings


def from_secrets_manager(secret_id: str) -> dict[str, object]:
    from aws_lambda_powertools.utilities import parameters

    # force_fetch: read once per cold start, never a value cached by an earlier call in the process.
    raw = parameters.get_secret(secret_id, force_fetch=True)
    data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    if not isinstance(data, dict):
        raise ValueError("the secret must hold a JSON object of environment variables")
    return data


def from_ssm(path: str) -> dict[str, object]:
    """The parameters directly under `path` (not deeper), by their last name segment."""
    from aws_lambda_powertools.utilities import parameters

    found = parameters.get_parameters(
        path.rstrip("/") or "/", recursive=False, decrypt=True, force_fetch=True
    )
    return {name.rsplit("/", 1)[-1]: value for name, value in found.items()}


def load(env: Mapping[str, str]) -> dict[str, object]:
    """Every variable the configured sources hold (the secret's over the SSM path's)."""
    values: dict[str, object] = {}
    if env.get("GATEWAYZ_SSM_PATH"):
        values.update(from_ssm(env["GATEWAYZ_SSM_PATH"]))
    if env.get("GATEWAYZ_SECRETS_ARN"):
        values.update(from_secrets_manager(env["GATEWAYZ_SECRETS_ARN"]))
    return values


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        lines, warnings = exports(load(env), env)
    except Exception as exc:  # any failure must stop the cold start with a readable message
        print(f"gatewayz secrets: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"gatewayz secrets: {warning}", file=sys.stderr)
    if lines:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
