"""Schemas of the Responses routes for the OpenAPI document (SPEC §2.3): the request, the response
object, the stream events and a deletion. Bodies are checked by hand
(shared.frontends.openai_responses) and pass through to OpenAI's own Responses API untouched, so
every shape allows extra fields (built-in tools, new item types).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.openapi.base import Shape
from shared.openapi.inference import Routing


class InputItem(Shape):
    """A message (`role`, `content`: a string or input_text / input_image / input_file parts), a
    `function_call` or a `function_call_output` (by `type`); reasoning items are taken back too."""

    type: str | None = Field(
        default=None, description="message (the default), function_call, function_call_output, …"
    )
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[dict[str, Any]] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[dict[str, Any]] | None = None


class ResponsesTool(Shape):
    """A function tool; built-in tools (web_search, file_search, …) need an OpenAI model."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="JSON Schema of the arguments")
    strict: bool | None = None


class TextConfig(Shape):
    format: dict[str, Any] | None = Field(default=None, description="text, json_object or json_schema")


class ReasoningConfig(Shape):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None


class ResponsesRequest(Routing):
    """The Responses request; `model` is any Gatewayz model id (OpenAI models pass through to
    OpenAI's own Responses API, others are translated)."""

    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = Field(
        default=None, description="Output budget; it bounds the credit reservation"
    )
    temperature: float | None = None
    top_p: float | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    stream: bool = False
    store: bool = Field(
        default=False,
        description="Keep this response (for GET and previous_response_id) for the retention period. "
        "Unlike OpenAI, Gatewayz stores nothing unless asked.",
    )
    previous_response_id: str | None = Field(
        default=None, description="Continue after a stored response of yours: its input and output come first"
    )


class InputTokensDetails(Shape):
    cached_tokens: int = 0


class OutputTokensDetails(Shape):
    reasoning_tokens: int = 0


class ResponsesUsage(Shape):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int
    cost: float = Field(description="USD charged, a number written from the exact decimal")


class OutputItem(Shape):
    """A `message` (output_text / refusal parts), a `function_call` or a `reasoning` item."""

    id: str
    type: str
    status: str | None = None
    role: Literal["assistant"] | None = None
    content: list[dict[str, Any]] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    summary: list[dict[str, Any]] | None = None


class ResponseObject(Shape):
    id: str = Field(description="resp_…, minted by the gateway")
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    model: str
    output: list[OutputItem]
    usage: ResponsesUsage | None = None
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = False
    metadata: dict[str, str] | None = None


class ResponseStreamEvent(Shape):
    """One SSE event (`event: <type>` and its data): response.created, response.in_progress,
    response.output_item.added, response.content_part.added, response.output_text.delta, …,
    response.completed with the usage (and its cost); response.failed after an upstream failure."""

    type: str
    sequence_number: int
    response: ResponseObject | None = None
    output_index: int | None = None
    item_id: str | None = None
    content_index: int | None = None
    item: OutputItem | None = None
    delta: str | None = None


class DeletedResponse(Shape):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True
