"""Print `export NAME='value'` lines for the JSON object stored in a Secrets Manager secret.

Run by secrets.sh at cold start when GATEWAYZ_SECRETS_ARN is set, on the Lambda runtime's own
boto3 (not a project dependency). The secret holds settings of the configuration contract
(SPEC §1) that should not sit in the function's configuration: provider keys (`<ID>_API_KEY`),
`STRIPE_*`, `SUPABASE_*`, ... A variable that already has a non-empty value in the environment
wins over the secret; names the Lambda runtime owns (`AWS_*`, `LAMBDA_*`, `PATH`, ...) are refused.
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
    """The shell `export` lines for `secret`, and a warning per entry that was refused."""
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


def fetch(secret_id: str) -> dict[str, object]:
    import boto3  # provided by the Lambda Python runtime

    response = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    data = json.loads(response["SecretString"])
    if not isinstance(data, dict):
        raise ValueError("the secret must hold a JSON object of environment variables")
    return data


def main() -> int:
    secret_id = os.environ.get("GATEWAYZ_SECRETS_ARN", "")
    if not secret_id:
        return 0
    try:
        lines, warnings = exports(fetch(secret_id), os.environ)
    except Exception as exc:  # any failure must stop the cold start with a readable message
        print(f"secrets_env: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"secrets_env: {warning}", file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
