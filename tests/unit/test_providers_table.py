"""The provider table itself (STYLE §10): every row of SPEC §3, validated, bound to configuration."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.providers import bind, load_providers, parse_providers

# SPEC §3: id → (dialect, base URL). `local` has no fixed URL.
SPEC_ROWS = {
    "openai": ("openai", "https://api.openai.com/v1"),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "google": ("gemini", "https://generativelanguage.googleapis.com/v1beta"),
    "google-vertex": ("gemini", "https://{region}-aiplatform.googleapis.com/v1"),
    "google-vertex-anthropic": ("anthropic-vertex", "https://{region}-aiplatform.googleapis.com/v1"),
    "aws-bedrock": ("bedrock", None),
    "openrouter": ("openai", "https://openrouter.ai/api/v1"),
    "portkey": ("openai", "https://api.portkey.ai/v1"),
    "featherless": ("openai", "https://api.featherless.ai/v1"),
    "chutes": ("openai", "https://llm.chutes.ai/v1"),
    "deepinfra": ("openai", "https://api.deepinfra.com/v1/openai"),
    "fireworks": ("openai", "https://api.fireworks.ai/inference/v1"),
    "together": ("openai", "https://api.together.xyz/v1"),
    "huggingface": ("openai", "https://router.huggingface.co/v1"),
    "groq": ("openai", "https://api.groq.com/openai/v1"),
    "cerebras": ("openai", "https://api.cerebras.ai/v1"),
    "cloudflare-workers-ai": ("openai", "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1"),
    "xai": ("openai", "https://api.x.ai/v1"),
    "mistral": ("openai", "https://api.mistral.ai/v1"),
    "deepseek": ("openai", "https://api.deepseek.com/v1"),
    "alibaba-cloud": ("openai", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
    "zai": ("openai", "https://api.z.ai/api/paas/v4"),
    "moonshot": ("openai", "https://api.moonshot.ai/v1"),
    "minimax": ("openai", "https://api.minimax.io/v1"),
    "novita": ("openai", "https://api.novita.ai/v3/openai"),
    "nebius": ("openai", "https://api.studio.nebius.com/v1"),
    "sambanova": ("openai", "https://api.sambanova.ai/v1"),
    "hyperbolic": ("openai", "https://api.hyperbolic.xyz/v1"),
    "perplexity": ("openai", "https://api.perplexity.ai"),
    "cohere": ("openai", "https://api.cohere.ai/compatibility/v1"),
    "vercel-ai-gateway": ("openai", "https://ai-gateway.vercel.sh/v1"),
    "local": ("openai", None),
}


def test_every_spec_row_is_in_the_table() -> None:
    table = load_providers()
    assert set(table) == set(SPEC_ROWS)
    for pid, (dialect, base) in SPEC_ROWS.items():
        row = table[pid]
        assert row.dialect == dialect, pid
        if base is not None:
            assert row.base_url.startswith(base), pid
        assert row.docs.startswith("https://"), pid


def _row(**extra: str) -> str:
    fields = {
        "id": '"acme"',
        "name": '"Acme"',
        "dialect": '"openai"',
        "base_url": '"https://api.acme.test/v1"',
        "auth": '"bearer"',
        "site_url": '"https://acme.test"',
        "docs": '"https://acme.test/docs"',
        **extra,
    }
    return "[[provider]]\n" + "\n".join(f"{k} = {v}" for k, v in fields.items()) + "\n"


def test_a_new_openai_compatible_provider_is_one_row() -> None:
    table = parse_providers(_row())
    assert table["acme"].dialect == "openai" and table["acme"].auth == "bearer"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"dialect": '"soap"'}, "dialect"),
        ({"auth": '"magic"'}, "auth"),
        ({"colour": '"red"'}, "unknown field"),
        ({"supports": '["teleport"]'}, "unknown feature"),
        ({"base_url": '"https://{zone}.acme.test"'}, "url_params"),
        ({"quirks": '{ shout = ["x"] }'}, "quirk"),
        ({"id": '"Bad_Id"'}, "id must be"),
        ({"base_url": '"ftp://acme.test"'}, "http"),
    ],
)
def test_malformed_rows_are_rejected(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_providers(_row(**extra))


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_providers(_row() + _row())


def test_binding_reads_key_and_base_url_by_the_naming_rule() -> None:
    table = load_providers()
    settings = Settings.from_env(
        {"GOOGLE_VERTEX_API_KEY": "tok", "GOOGLE_VERTEX_PROJECT": "proj", "OPENROUTER_API_KEY": "or-key"}
    )
    vertex = bind(table["google-vertex"], settings)
    assert vertex.configured
    # The region has a default; the project comes from the environment.
    assert vertex.base_url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/proj/locations/us-central1/publishers/google"
    )
    assert vertex.headers["authorization"] == "Bearer tok"
    router = bind(table["openrouter"], settings)
    assert router.headers["authorization"] == "Bearer or-key"
    assert router.headers["x-title"] == "Gatewayz"


def test_unconfigured_rows_say_why() -> None:
    table = load_providers()
    empty = Settings.from_env({})
    assert bind(table["groq"], empty).reason == "GROQ_API_KEY is not set"
    assert (
        "CLOUDFLARE_WORKERS_AI_ACCOUNT_ID"
        in bind(
            table["cloudflare-workers-ai"], Settings.from_env({"CLOUDFLARE_WORKERS_AI_API_KEY": "k"})
        ).reason
    )
    # Cloud rows: configured by their cloud's credentials, or by an API key; else they say both.
    bedrock = bind(table["aws-bedrock"], empty)
    assert not bedrock.configured and "AWS_ACCESS_KEY_ID" in bedrock.reason
    assert "AWS_BEDROCK_API_KEY" in bedrock.reason
    vertex = bind(table["google-vertex"], Settings.from_env({"GOOGLE_VERTEX_PROJECT": "p"}))
    assert not vertex.configured and "GOOGLE_VERTEX_CREDENTIALS" in vertex.reason


def test_cloud_rows_configured_by_cloud_credentials() -> None:
    table = load_providers()
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "eu-west-3"}
    bedrock = bind(table["aws-bedrock"], Settings.from_env(env))
    assert bedrock.configured and "authorization" not in bedrock.headers  # signed per request
    assert bedrock.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert bedrock.params["region"] == "eu-west-3"
    keyed = bind(table["aws-bedrock"], Settings.from_env({"AWS_BEDROCK_API_KEY": "bedrock-key"}))
    assert keyed.configured and keyed.headers["authorization"] == "Bearer bedrock-key"
    vertex = bind(
        table["google-vertex"],
        Settings.from_env({"GOOGLE_VERTEX_PROJECT": "p", "GOOGLE_APPLICATION_CREDENTIALS": "/sa.json"}),
    )
    assert vertex.configured and "authorization" not in vertex.headers  # a minted token per request


def test_vendor_specific_auth_headers() -> None:
    table = load_providers()
    settings = Settings.from_env(
        {
            "PORTKEY_API_KEY": "pk",
            "PORTKEY_VIRTUAL_KEY": "vk",
            "ANTHROPIC_API_KEY": "ak",
            "GOOGLE_API_KEY": "gk",
        }
    )
    portkey = bind(table["portkey"], settings)
    assert portkey.headers["x-portkey-api-key"] == "pk" and portkey.headers["x-portkey-virtual-key"] == "vk"
    assert "authorization" not in portkey.headers
    anthropic = bind(table["anthropic"], settings)
    assert anthropic.headers["x-api-key"] == "ak" and anthropic.headers["anthropic-version"] == "2023-06-01"
    assert bind(table["google"], settings).headers["x-goog-api-key"] == "gk"


def test_a_base_url_alone_configures_a_self_hosted_upstream() -> None:
    local = bind(
        load_providers()["local"], Settings.from_env({"LOCAL_BASE_URL": "http://127.0.0.1:11434/v1/"})
    )
    assert local.configured and local.base_url == "http://127.0.0.1:11434/v1"
    assert "authorization" not in local.headers


def test_an_unset_base_url_never_falls_back_to_a_placeholder() -> None:
    """Without its <ID>_BASE_URL a row goes only to the public URL the table gives it; a row
    without one (`local`) is not configured, whatever key is offered (issue 10, defect 3)."""
    empty = Settings.from_env({})
    for pid, row in load_providers().items():
        for key in (None, "a-users-own-key"):
            endpoint = bind(row, empty, key=key)
            if row.base_url:
                assert endpoint.base_url.startswith("https://"), pid
            else:
                assert not endpoint.configured and not endpoint.missing_key, pid
                assert endpoint.reason.startswith(f"{row.env_base_url} is not set"), pid
    local = load_providers()["local"]
    assert local.base_url == "" and not local.takes_byok


def test_only_rows_with_a_fixed_public_host_take_a_users_own_key() -> None:
    table = load_providers()
    taking = {pid for pid, row in table.items() if row.takes_byok}
    # Not: the operator's self-hosted server, service-account and SigV4 rows (no plain key).
    assert set(table) - taking == {"local", "google-vertex", "google-vertex-anthropic", "aws-bedrock"}
    for pid in taking:
        assert table[pid].base_url.startswith("https://"), pid
    # A row whose host comes from the operator's environment takes none either.
    templated = parse_providers(
        _row(base_url='"https://{host}/v1"', url_params='{ host = "ACME_HOST" }')
        + _row(id='"nowhere"').replace('base_url = "https://api.acme.test/v1"\n', "")
        + _row(id='"plain"', base_url='"http://api.acme.test/v1"')
    )
    assert not any(row.takes_byok for row in templated.values())
    # Only the API key missing: a user's own key would do — for a row that takes one.
    assert bind(table["groq"], Settings.from_env({})).missing_key
    assert not bind(
        parse_providers(_row(id='"plain"', base_url='"http://api.acme.test/v1"'))["plain"],
        Settings.from_env({}),
    ).missing_key
