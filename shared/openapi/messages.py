"""Schemas of the Anthropic Messages routes for the OpenAPI document (SPEC §2.2): the request, the
message, the stream events, token counting, and the Anthropic error envelope these routes answer
with. Bodies are checked by hand (shared.frontends.anthropic_messages) and pass through to
Anthropic-dialect upstreams untouched, so every shape allows extra fields (betas, new blocks).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.openapi.base import Shape
from shared.openapi.inference import Routing


class ContentBlock(Shape):
    """text, image, document, tool_use, tool_result, thinking, redacted_thinking, … (by `type`)."""

    type: str
    text: str | None = None
    source: dict[str, Any] | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[dict[str, Any]] | None = None
    thinking: str | None = None
    signature: str | None = None
    cache_control: dict[str, Any] | None = None


class InputMessage(Shape):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolDefinition(Shape):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] = Field(description="JSON Schema of the tool's input")
    cache_control: dict[str, Any] | None = None


class CountTokensRequest(Routing):
    model: str
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class MessagesRequest(CountTokensRequest):
    """The whole Messages request; `model` is any Gatewayz model id (a Claude model passes
    through to Anthropic, others are translated)."""

    max_tokens: int = Field(gt=0, description="Output budget; it bounds the credit reservation")
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None


class MessagesUsage(Shape):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AnthropicMessage(Shape):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: MessagesUsage


class StreamEvent(Shape):
    """One SSE event (`event: <type>` + `data: <json>`): message_start, content_block_start,
    content_block_delta, content_block_stop, message_delta, message_stop, ping, or error."""

    type: str


class TokenCount(Shape):
    input_tokens: int


class AnthropicErrorDetail(Shape):
    type: str
    message: str


class AnthropicErrorEnvelope(Shape):
    """Every error of the `/v1/messages` routes (SPEC §10)."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail
    request_id: str | None = None
