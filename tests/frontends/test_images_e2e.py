"""`POST /v1/images/generations` end to end with the official `openai` SDK against the gateway on
loopback (SPEC §2.3): dall-e-3 (priced per image by quality and size, `url` and `b64_json`),
gpt-image-1 (priced per token from the usage it reports) and FLUX.1 [schnell] on an
OpenAI-compatible host (Together, per image by size). What came back is read through the SDK,
what the upstream received through the OpenAI fake, and what was charged through the ledger."""

from __future__ import annotations

import base64
import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import provision
from tests.fakes.images_fake import PNG
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.frontends.test_embeddings_e2e import record, uncharged, usage_row
from tests.harness import GatewayServer

MARKUP = Decimal("1.25")
M = Decimal(1_000_000)


@pytest.mark.parametrize(
    ("quality", "size", "price"),
    [("standard", "1024x1024", "0.04"), ("hd", "1024x1024", "0.08"), ("hd", "1792x1024", "0.12")],
)
def test_dall_e_3_returns_the_upstreams_url_billed_per_image(
    client: openai.OpenAI, openai_fake: OpenAIFake, gateway_db: str, quality: str, size: str, price: str
) -> None:
    raw = client.images.with_raw_response.generate(
        model="dall-e-3",
        prompt="A lighthouse at dusk",
        quality=quality,
        size=size,
        style="natural",  # type: ignore[arg-type]
    )
    result = raw.parse()
    assert result.data is not None and len(result.data) == 1
    assert result.data[0].url == f"{openai_fake.url}/images/img-0.png"  # the upstream's, never ours
    assert result.data[0].revised_prompt and result.data[0].b64_json is None
    charged = Decimal(raw.headers["x-gatewayz-cost"])
    assert charged == Decimal(price) * MARKUP
    assert usage_row(gateway_db, raw.headers["x-request-id"]) == charged
    assert raw.http_response.json()["usage"]["images"] == 1
    row = record(gateway_db, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"], row["provider"]) == ("images", "openai/dall-e-3", "openai")
    sent = openai_fake.requests[-1]
    assert sent.path == "/openai/v1/images/generations"
    assert sent.body == {
        "model": "dall-e-3", "prompt": "A lighthouse at dusk", "quality": quality, "size": size, "style": "natural",
    }  # fmt: skip


def test_dall_e_3_b64_json(client: openai.OpenAI, openai_fake: OpenAIFake) -> None:
    result = client.images.generate(model="openai/dall-e-3", prompt="A cat", response_format="b64_json")
    assert result.data is not None and base64.b64decode(result.data[0].b64_json or "") == PNG
    assert openai_fake.requests[-1].body["response_format"] == "b64_json"


def test_gpt_image_1_is_billed_per_token_from_its_usage(
    client: openai.OpenAI, openai_fake: OpenAIFake, gateway_db: str
) -> None:
    openai_fake.script("gpt-image-1", Reply(input=50))
    raw = client.images.with_raw_response.generate(
        model="gpt-image-1", prompt="Two otters", n=2, quality="high", size="1024x1536"
    )
    result = raw.parse()
    assert result.data is not None and [base64.b64decode(d.b64_json or "") for d in result.data] == [PNG, PNG]
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (50, 2 * 6240)
    charged = Decimal(raw.headers["x-gatewayz-cost"])
    assert charged == (50 * Decimal(5) + 2 * 6240 * Decimal(40)) / M * MARKUP
    assert usage_row(gateway_db, raw.headers["x-request-id"]) == charged
    assert openai_fake.requests[-1].body["n"] == 2


def test_an_openai_compatible_host_is_billed_per_image_by_size(
    client: openai.OpenAI, openai_fake: OpenAIFake, gateway_db: str
) -> None:
    raw = client.images.with_raw_response.generate(
        model="black-forest-labs/flux.1-schnell", prompt="A red bicycle", n=3, size="512x512",  # type: ignore[arg-type]
        response_format="b64_json",
    )  # fmt: skip
    assert raw.parse().data is not None and len(raw.parse().data or []) == 3
    assert openai_fake.requests[-1].path == "/together/v1/images/generations"
    charged = Decimal(raw.headers["x-gatewayz-cost"])
    assert charged == 3 * Decimal("0.0007077888") * MARKUP
    assert usage_row(gateway_db, raw.headers["x-request-id"]) == charged


def test_the_reservation_is_the_worst_case_for_n_images(
    gateway: GatewayServer, gateway_settings_: Any, openai_fake: OpenAIFake
) -> None:
    """$0.20 covers one hd 1792x1024 image ($0.15 with the markup) but not two."""
    user = provision(gateway_settings_, f"img-{uuid.uuid4().hex[:8]}@example.com", Decimal("0.2"))
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=user.key, max_retries=0)
    with sdk:
        kind: dict[str, Any] = {"quality": "hd", "size": "1792x1024"}
        with pytest.raises(openai.APIStatusError) as info:
            sdk.images.generate(model="black-forest-labs/flux.1-schnell", prompt="x", n=80, size="1024x1024")
        assert info.value.status_code == 400  # n above 10, before any reservation
        with pytest.raises(openai.APIStatusError) as info:
            sdk.images.generate(model="gpt-image-1", prompt="x", n=1)  # 6240 tokens at $40/M: $0.31
        assert info.value.status_code == 402 and "fewer images" in info.value.message
        assert not openai_fake.requests
        sdk.images.generate(model="dall-e-3", prompt="x", **kind)
        assert len(openai_fake.requests) == 1


# --- errors ----------------------------------------------------------------------------------
def test_chat_with_an_image_model_is_a_400_naming_the_endpoint(
    client: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="dall-e-3", messages=[{"role": "user", "content": "Hi"}])
    assert "POST /v1/images/generations" in info.value.message
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="openai/gpt-4o", prompt="x")
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="text-embedding-3-small", prompt="x")
    assert not openai_fake.requests


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "size": 1024}, "size"),
        ({"prompt": "x", "output_compression": 101}, "output_compression"),
        ({"prompt": "x", "stream": True}, "stream"),
    ],
)
def test_bad_input_is_a_400_and_nothing_is_charged(
    gateway: GatewayServer, account: Any, openai_fake: OpenAIFake, gateway_db: str,
    body: dict[str, Any], param: str,
) -> None:  # fmt: skip
    response = httpx.post(
        f"{gateway.url}/v1/images/generations",
        headers={"authorization": f"Bearer {account.key}"},
        json={"model": "dall-e-3", **body},
        timeout=20,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not openai_fake.requests
    uncharged(gateway_db, response.headers["x-request-id"])


def test_what_the_upstream_refuses_is_its_400_uncharged(
    client: openai.OpenAI, openai_fake: OpenAIFake, gateway_db: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="dall-e-3", prompt="x", n=2)  # dall-e-3 makes one image
    assert "n" in info.value.message
    uncharged(gateway_db, info.value.response.headers["x-request-id"])
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gpt-image-1", prompt="x", response_format="url")
    assert "response_format" in info.value.message
    uncharged(gateway_db, info.value.response.headers["x-request-id"])


def test_the_catalog_shows_image_models_and_their_per_image_prices(gateway: GatewayServer) -> None:
    models = httpx.get(f"{gateway.url}/v1/models", params={"modality": "image"}, timeout=20).json()["data"]
    by_id = {m["id"]: m for m in models}
    assert {"openai/dall-e-3", "openai/gpt-image-1", "black-forest-labs/flux.1-schnell"} <= set(by_id)
    dalle = by_id["openai/dall-e-3"]
    assert dalle["architecture"]["output_modalities"] == ["image"]
    assert Decimal(dalle["pricing"]["images"]["hd/1792x1024"]) == Decimal("0.12") * MARKUP
    assert "images" not in by_id["openai/gpt-image-1"]["pricing"]
