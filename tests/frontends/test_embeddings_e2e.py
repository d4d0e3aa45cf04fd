"""`POST /v1/embeddings` end to end with the official `openai` SDK against the gateway on loopback
(SPEC §2.3): passed through to an OpenAI-compatible upstream (the OpenAI fake's /v1/embeddings) and
translated to Gemini's batchEmbedContents (the Gemini fake). What came back is read through the
SDK (which asks for base64 by default and decodes it), what the upstream received through the
fakes, and what was charged through the ledger and the request records, against the catalog's
per-input-token prices."""

from __future__ import annotations

import base64
import struct
import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import provision
from tests.fakes.embeddings_fake import vector
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer
from tests.store.support import query

MARKUP = Decimal("1.25")
M = Decimal(1_000_000)
SMALL = "openai/text-embedding-3-small"
GEMINI = "google/gemini-embedding-001"


def cost(tokens: int, per_million: str) -> Decimal:
    return tokens * Decimal(per_million) / M * MARKUP


def usage_row(gateway_db: str, request_id: str) -> Decimal:
    rows = query(
        gateway_db,
        "SELECT amount_pico FROM credit_transactions WHERE request_id = :r AND type = 'usage'",
        {"r": request_id},
    )
    assert len(rows) == 1, rows
    return -Decimal(rows[0]["amount_pico"]) / Decimal(10) ** 12


def record(gateway_db: str, request_id: str) -> dict[str, Any]:
    rows = query(gateway_db, "SELECT * FROM request_records WHERE request_id = :r", {"r": request_id})
    assert len(rows) == 1, rows
    return dict(rows[0])


def uncharged(gateway_db: str, request_id: str) -> None:
    assert not query(
        gateway_db, "SELECT id FROM credit_transactions WHERE request_id = :r", {"r": request_id}
    )
    holds = query(gateway_db, "SELECT status FROM credit_holds WHERE request_id = :r", {"r": request_id})
    assert all(h["status"] != "open" for h in holds), holds


def floats32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def test_list_input_is_passed_through_and_billed_per_input_token(
    client: openai.OpenAI, openai_fake: OpenAIFake, gateway_db: str
) -> None:
    openai_fake.script("text-embedding-3-small", Reply(input=1234))
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["first text", "second text"], encoding_format="float",
        user="u-42",
    )  # fmt: skip
    result = raw.parse()
    assert result.model == SMALL and result.object == "list"
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == vector("first text", 1536)
    assert result.data[1].embedding == vector("second text", 1536)
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (1234, 1234)
    charged = Decimal(raw.headers["x-gatewayz-cost"])
    assert charged == cost(1234, "0.02")
    assert Decimal(str(raw.http_response.json()["usage"]["cost"])) == charged
    assert usage_row(gateway_db, raw.headers["x-request-id"]) == charged
    row = record(gateway_db, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"], row["provider"]) == ("embeddings", SMALL, "openai")
    assert (row["input_tokens"], row["output_tokens"], bool(row["estimated"])) == (1234, 0, False)
    sent = openai_fake.requests[-1]
    assert sent.path == "/openai/v1/embeddings"
    assert sent.body == {
        "model": "text-embedding-3-small",
        "input": ["first text", "second text"],
        "encoding_format": "float",
        "user": "u-42",
    }


def test_dimensions_and_base64_decode_to_the_same_floats(
    client: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    as_floats = client.embeddings.create(
        model=SMALL, input="the same text", dimensions=256, encoding_format="float"
    )
    decoded = client.embeddings.create(model=SMALL, input="the same text", dimensions=256)  # SDK: base64
    assert openai_fake.requests[-1].body["encoding_format"] == "base64"
    assert openai_fake.requests[-1].body["dimensions"] == 256
    assert len(as_floats.data[0].embedding) == 256
    assert decoded.data[0].embedding == as_floats.data[0].embedding


def test_token_arrays_pass_through(client: openai.OpenAI, openai_fake: OpenAIFake) -> None:
    result = client.embeddings.create(model=SMALL, input=[[101, 202, 303], [7]], encoding_format="float")
    assert openai_fake.requests[-1].body["input"] == [[101, 202, 303], [7]]
    assert result.data[1].embedding == vector("7", 1536)


def test_what_mistral_spells_differently_is_adjusted(client: openai.OpenAI, openai_fake: OpenAIFake) -> None:
    """Mistral takes output_dimension and no user (a quirk of the offer and of the provider row)."""
    raw = client.embeddings.with_raw_response.create(
        model="mistralai/codestral-embed",
        input="def f(): pass",
        dimensions=512,
        user="u-1",
        encoding_format="float",
    )
    assert len(raw.parse().data[0].embedding) == 512
    assert raw.headers["x-gatewayz-dropped-params"] == "user"
    sent = openai_fake.requests[-1]
    assert sent.path == "/mistral/v1/embeddings"
    assert sent.body == {"model": "codestral-embed", "input": "def f(): pass", "output_dimension": 512,
                         "encoding_format": "float"}  # fmt: skip


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_gemini_is_translated_to_batch_embed_contents(
    client: openai.OpenAI, gemini_fake: GeminiFake, gateway: GatewayServer, account: Any, gateway_db: str,
    encoding: str,
) -> None:  # fmt: skip
    texts = ["a" * 40, "b" * 81]  # 10 and 21 tokens by the gateway's estimate (four characters each)
    response = httpx.post(
        f"{gateway.url}/v1/embeddings",
        headers={"authorization": f"Bearer {account.key}"},
        json={"model": GEMINI, "input": texts, "dimensions": 768, "encoding_format": encoding},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    sent = gemini_fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body["requests"] == [
        {
            "model": "models/gemini-embedding-001",
            "outputDimensionality": 768,
            "content": {"parts": [{"text": t}]},
        }
        for t in texts
    ]
    for i, text in enumerate(texts):
        got = body["data"][i]["embedding"]
        if encoding == "base64":  # OpenAI's: little-endian float32 bytes
            got = list(struct.unpack("<768f", base64.b64decode(got)))
        assert got == floats32(vector(text, 768))
    assert body["model"] == GEMINI and [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == 31 and body["usage"]["estimated"] is True
    charged = Decimal(response.headers["x-gatewayz-cost"])
    assert charged == cost(31, "0.15")
    assert usage_row(gateway_db, response.headers["x-request-id"]) == charged
    assert bool(record(gateway_db, response.headers["x-request-id"])["estimated"]) is True


def test_the_sdk_decodes_gemini_base64(client: openai.OpenAI, gemini_fake: GeminiFake) -> None:
    result = client.embeddings.create(model=GEMINI, input="hello")
    assert result.data[0].embedding == floats32(vector("hello", 3072))


# --- errors ----------------------------------------------------------------------------------
def test_chat_with_an_embedding_model_is_a_400_naming_the_endpoint(
    client: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "Hi"}])
    assert "POST /v1/embeddings" in info.value.message
    assert info.value.body["param"] == "model"  # type: ignore[index]
    assert not openai_fake.requests


def test_embeddings_with_a_chat_model_is_a_400(client: openai.OpenAI, openai_fake: OpenAIFake) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="openai/gpt-4o", input="Hi")
    assert "POST /v1/chat/completions" in info.value.message
    assert not openai_fake.requests


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input[1]"),
        ({"input": [["x"]]}, "input[0]"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "user": 3}, "user"),
        ({}, "input"),
    ],
)
def test_bad_input_is_a_400_and_nothing_is_charged(
    gateway: GatewayServer, account: Any, openai_fake: OpenAIFake, gateway_db: str,
    body: dict[str, Any], param: str,
) -> None:  # fmt: skip
    response = httpx.post(
        f"{gateway.url}/v1/embeddings",
        headers={"authorization": f"Bearer {account.key}"},
        json={"model": SMALL, **body},
        timeout=20,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert not openai_fake.requests
    uncharged(gateway_db, response.headers["x-request-id"])


def test_gemini_cannot_embed_token_arrays(client: openai.OpenAI, gemini_fake: GeminiFake) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=GEMINI, input=[1, 2, 3])
    assert info.value.body["param"] == "input"  # type: ignore[index]
    assert not gemini_fake.requests


def test_the_upstreams_own_400_reaches_the_caller_uncharged(
    client: openai.OpenAI, openai_fake: OpenAIFake, gateway_db: str
) -> None:
    refusal = "This model does not support specifying dimensions."
    openai_fake.script("text-embedding-3-small", Reply(status=400, error_message=refusal))
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=SMALL, input="x", dimensions=8)
    assert refusal in info.value.message
    assert info.value.response.headers.get("x-request-id")
    uncharged(gateway_db, info.value.response.headers["x-request-id"])


def test_an_upstream_outage_is_a_5xx_uncharged(
    client: openai.OpenAI, openai_fake: OpenAIFake, gateway_db: str
) -> None:
    openai_fake.script("text-embedding-3-small", *[Reply(status=500)] * 5)
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(model=SMALL, input="x")
    assert info.value.status_code in (502, 503)
    uncharged(gateway_db, info.value.response.headers["x-request-id"])


def test_no_api_key_is_a_401(gateway: GatewayServer) -> None:
    response = httpx.post(f"{gateway.url}/v1/embeddings", json={"model": SMALL, "input": "x"}, timeout=20)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_without_credits_it_is_a_402_before_any_upstream_call(
    gateway: GatewayServer, gateway_settings_: Any, openai_fake: OpenAIFake
) -> None:
    user = provision(gateway_settings_, f"emb-{uuid.uuid4().hex[:8]}@example.com", Decimal(0))
    broke = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=user.key, max_retries=0)
    with broke, pytest.raises(openai.APIStatusError) as info:
        broke.embeddings.create(model=SMALL, input="x" * 100)
    assert info.value.status_code == 402
    assert "send less input" in info.value.message
    assert not openai_fake.requests


# --- the catalog -----------------------------------------------------------------------------
def test_the_catalog_lists_embedding_models_by_modality(gateway: GatewayServer) -> None:
    models = httpx.get(f"{gateway.url}/v1/models", params={"modality": "embeddings"}, timeout=20).json()[
        "data"
    ]
    assert len(models) >= 8
    for model in models:
        assert model["architecture"]["output_modalities"] == ["embeddings"]
        assert model["dimensions"] and Decimal(model["pricing"]["completion"]) == 0
    small = next(m for m in models if m["id"] == SMALL)
    assert small["dimensions"] == 1536
    assert Decimal(small["pricing"]["prompt"]) == Decimal("0.02") * MARKUP
