"""Cold start per function (issue 16): importing a function module in a fresh interpreter (what
Lambda's init phase does) loads nothing its group does not use. The observability backends are
imported only when enabled or on the first invocation; the catalog and health functions never
load cryptography or a provider dialect; no function loads psycopg before it talks to PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Never at import, in any function: the backends of the seam, the database driver, Supabase,
# the cloud providers' credential libraries (botocore for Bedrock, google-auth for Vertex: loaded
# on the first signed call or token mint).
NEVER = (
    "prometheus_client",
    "aws_lambda_powertools",
    "sentry_sdk",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "psycopg",
    "supabase",
    "botocore",
    "google.auth",
    "google.oauth2",
)
# What each function may not import beyond NEVER (its group does not use it).
EXTRA = {
    "catalog": ("cryptography", "jwt", "shared.dialects.", "shared.pipeline"),
    "health": ("cryptography", "jwt", "shared.dialects.", "shared.pipeline"),
    "chat": ("cryptography", "jwt"),
    "messages": ("cryptography", "jwt"),
    "responses": ("cryptography", "jwt"),
    "jobs": ("cryptography", "jwt", "shared.dialects.", "shared.pipeline"),
    "admin": ("jwt", "shared.dialects.openai_", "shared.dialects.anthropic_", "shared.dialects.responses_"),
    "account": ("jwt",),
    "auth": ("shared.pipeline",),
    "embeddings": ("cryptography", "jwt"),
    "images": ("cryptography", "jwt"),
    # Stripe's library is imported on the first billing call or webhook, never at cold start.
    "billing": ("stripe",),
    "webhooks": ("stripe", "shared.dialects.", "shared.pipeline"),
    "web": ("stripe",),
    # History content is decrypted on use: cryptography loads with the first history call.
    "history": (
        "cryptography",
        "jwt",
        "shared.dialects.openai_",
        "shared.dialects.anthropic_",
        "shared.pipeline",
    ),
}
PROBE = "import json, sys, importlib; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"


@pytest.mark.parametrize("function", sorted(EXTRA))
def test_a_function_imports_only_what_its_group_uses(function: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, f"functions.{function}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},  # no GATEWAYZ_*, SENTRY_DSN or OTEL_* from the test run
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    for prefix in (*NEVER, *EXTRA[function]):
        if prefix.endswith(("_", ".")):  # a name prefix: `shared.dialects.` is any dialect module
            offending = [m for m in loaded if m.startswith(prefix)]
        else:  # a module and its submodules
            offending = [m for m in loaded if m == prefix or m.startswith(prefix + ".")]
        assert not offending, f"functions/{function}.py imports {offending[:5]} at import time"


@pytest.mark.parametrize("function", ["chat", "messages", "responses"])
def test_a_configured_vertex_service_account_is_loaded_on_first_use(function: str, tmp_path: Path) -> None:
    """With a Vertex service account in the environment (the deployed case), the cold start still
    leaves google-auth out: the key is read and google-auth imported on the first token mint."""
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com"}))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, f"functions.{function}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "GOOGLE_APPLICATION_CREDENTIALS": str(key),
            "GOOGLE_VERTEX_PROJECT": "p",
        },
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m.startswith(("google.auth", "google.oauth2"))]


def test_every_function_is_checked() -> None:
    modules = {p.stem for p in (ROOT / "functions").glob("*.py") if "\nhandler = " in p.read_text()}
    modules.add("jobs")
    assert modules <= set(EXTRA)
