"""Settings from AWS Secrets Manager and SSM Parameter Store (issue 16), read through Powertools
`parameters` against moto: what a cold start exports, what it refuses, and that a source that
cannot be read stops the start without printing a value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from shared import cloud_secrets

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def secret(values: object) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    return client.create_secret(Name="gatewayz/prod", SecretString=json.dumps(values))["ARN"]


def run(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cloud_secrets.main(env)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_secret_becomes_exports_that_the_shell_reads_back(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = secret({"OPENROUTER_API_KEY": "sk-or-'quoted' $HOME `x`", "STRIPE_TIMEOUT": 5})
    code, out, err = run({"GATEWAYZ_SECRETS_ARN": arn}, capsys)
    assert code == 0 and err == ""
    # What secrets.sh does with it: eval, then the app's environment holds the exact values.
    shell = subprocess.run(
        ["bash", "-c", 'eval "$EXPORTS"; printf "%s|%s" "$OPENROUTER_API_KEY" "$STRIPE_TIMEOUT"'],
        env={"EXPORTS": out, "PATH": os.environ["PATH"], "HOME": "/home/x"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == "sk-or-'quoted' $HOME `x`|5"


def test_the_configuration_wins_and_runtime_names_are_refused(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = secret(
        {
            "GATEWAYZ_REDIS_URL": "rediss://from-secret",
            "UPSTASH_REDIS_REST_URL": "https://from-secret",
            "AWS_REGION": "evil",
            "PATH": "/tmp",
            "lower_case": "x",
            "NESTED": {"a": 1},
        }
    )
    env = {
        "GATEWAYZ_SECRETS_ARN": arn,
        "GATEWAYZ_REDIS_URL": "redis://configured",
        "UPSTASH_REDIS_REST_URL": "",
    }
    code, out, err = run(env, capsys)
    assert code == 0
    assert out.splitlines() == ["export UPSTASH_REDIS_REST_URL=https://from-secret"]
    assert len(err.splitlines()) == 4 and "evil" not in err and "/tmp" not in err


def test_an_ssm_path_holds_one_parameter_per_variable_and_the_secret_wins(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name="/gatewayz/prod/ANTHROPIC_API_KEY", Value="sk-ant-ssm", Type="SecureString")
    ssm.put_parameter(Name="/gatewayz/prod/OPENROUTER_API_KEY", Value="sk-or-ssm", Type="String")
    ssm.put_parameter(Name="/gatewayz/prod/deeper/GROQ_API_KEY", Value="not-this-level", Type="String")
    ssm.put_parameter(Name="/gatewayz/staging/GROQ_API_KEY", Value="not-this-path", Type="String")
    arn = secret({"OPENROUTER_API_KEY": "sk-or-secret"})
    code, out, _ = run({"GATEWAYZ_SSM_PATH": "/gatewayz/prod/", "GATEWAYZ_SECRETS_ARN": arn}, capsys)
    assert code == 0
    assert out.splitlines() == [
        "export ANTHROPIC_API_KEY=sk-ant-ssm",  # a SecureString, decrypted
        "export OPENROUTER_API_KEY=sk-or-secret",
    ]


@pytest.mark.parametrize("stored", ["not json", json.dumps(["a", "list"])])
def test_a_secret_that_is_not_an_object_stops_the_cold_start_quietly(
    aws: None, capsys: pytest.CaptureFixture[str], stored: str
) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="gatewayz/bad", SecretString=stored)["ARN"]
    code, out, err = run({"GATEWAYZ_SECRETS_ARN": arn}, capsys)
    assert code == 1 and out == ""
    assert err.startswith("gatewayz secrets: ") and stored not in err


def test_a_missing_secret_stops_the_cold_start(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:gatewayz/none-AbCdEf"
    code, out, err = run({"GATEWAYZ_SECRETS_ARN": arn}, capsys)
    assert code == 1 and out == "" and "ResourceNotFoundException" in err


def shell(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """secrets.sh as with-secrets.sh sources it, then the command that would start the runtime."""
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; . "{ROOT}/infra/lambda/secrets.sh"; echo started'],
        # python3 is this interpreter, as on Lambda it is the one beside the vendored packages.
        env={
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "LAMBDA_TASK_ROOT": str(ROOT),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_source_the_hook_starts_the_runtime_at_once() -> None:
    done = shell({})
    assert done.returncode == 0 and done.stdout == "started\n"


def test_an_unreachable_source_fails_the_cold_start_before_the_runtime() -> None:
    done = shell(
        {
            "GATEWAYZ_SSM_PATH": "/gatewayz/prod/",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: the loader's own process fails
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_MAX_ATTEMPTS": "1",
        }
    )
    assert done.returncode == 1 and "started" not in done.stdout
    assert "Could not connect to the endpoint URL" in done.stderr
    assert (
        "gatewayz: could not load GATEWAYZ_SECRETS_ARN='' GATEWAYZ_SSM_PATH='/gatewayz/prod/'" in done.stderr
    )
