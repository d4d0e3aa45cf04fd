"""openai_to_anthropic_vertex: Claude on Google Vertex AI, the Anthropic Messages API behind
Vertex's publisher endpoint (https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude).

The body is Anthropic's with two differences: the model is named in the URL
(`.../publishers/anthropic/models/{model}:rawPredict`, `:streamRawPredict` for a stream), not in
the body, and the API version goes in the body as `anthropic_version: "vertex-2023-10-16"`
instead of a header. Everything else — translation, streams, usage, errors — is the anthropic
dialect's.
"""

from __future__ import annotations

from typing import Any

from shared.dialects.openai_to_anthropic import OpenAIToAnthropic

VERTEX_VERSION = "vertex-2023-10-16"


class OpenAIToAnthropicVertex(OpenAIToAnthropic):
    dialect = "anthropic-vertex"

    def path(self, stream: bool) -> str:
        return f"/models/{self.native_id}:{'streamRawPredict' if stream else 'rawPredict'}"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        out = super().request(body, stream)
        out.pop("model", None)
        return {"anthropic_version": VERTEX_VERSION, **out}
