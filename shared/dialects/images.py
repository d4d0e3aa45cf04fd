"""Image generation translators: an OpenAI `POST /v1/images/generations` request (the caller's own
body, checked by `shared.frontends.openai_images`) to an OpenAI-compatible upstream, passed
through with the native model id.

The answer comes back as the upstream wrote it: images as `b64_json` or as the upstream's own
`url` (the gateway never stores an image). What billing needs is read from it: the token usage
where the upstream reports one (gpt-image-1: `usage.input_tokens`, `usage.output_tokens`,
https://platform.openai.com/docs/api-reference/images/object), and always the number of images
with the quality and size asked, for models the catalog prices per image (dall-e-3, most hosts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.dialects.base import ChatTranslator, Usage
from shared.dialects.openai_to_openai import OpenAIToOpenAI
from shared.transport.errors import UpstreamError


def _count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UpstreamError(502, f"the upstream's image usage has no valid {name}", kind="protocol")
    return value


class ImagesToOpenAI(ChatTranslator):
    source = "images"
    dialect = "openai"
    takes_quirks = True  # what the host spells differently (Mistral: output_dimension)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = ("", "")

    def path(self, stream: bool) -> str:
        return "/images/generations"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        self.kind = (str(body.get("quality") or ""), str(body.get("size") or ""))
        return {**body, "model": self.native_id}

    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        images = data.get("data")
        if not isinstance(images, list):
            raise UpstreamError(
                502, "the upstream answered an image generation without data", kind="protocol"
            )
        usage = Usage(images=len(images), image_kind=self.kind)
        reported = data.get("usage")
        if isinstance(reported, dict):
            usage.input_tokens = _count(reported, "input_tokens")
            usage.output_tokens = _count(reported, "output_tokens")
        self.usage = usage
        return data

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return OpenAIToOpenAI.error(self, status, headers, body)  # type: ignore[arg-type]
