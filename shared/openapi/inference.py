"""Schemas of the inference routes for the OpenAPI document (SPEC §2): the OpenAI chat and legacy
completions requests, answers and stream chunks, with Gatewayz's additions (`models`, `provider`,
`usage.cost`). The bodies themselves are checked by hand (shared.pipeline.request); unknown fields
pass through to OpenAI-compatible upstreams, so every shape here allows extra fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.openapi.base import Shape


class ContentPart(Shape):
    type: Literal["text", "image_url", "input_audio", "file"] | str
    text: str | None = None
    image_url: dict[str, Any] | None = None
    input_audio: dict[str, Any] | None = None
    file: dict[str, Any] | None = None


class FunctionCall(Shape):
    name: str
    arguments: str = Field(description="JSON text of the arguments")


class ToolCall(Shape):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Shape):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionSpec(Shape):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="JSON Schema of the arguments")
    strict: bool | None = None


class Tool(Shape):
    type: Literal["function"] = "function"
    function: FunctionSpec


class StreamOptions(Shape):
    include_usage: bool = Field(default=False, description="Send the usage chunk (with `cost`) before [DONE]")


class MaxPrice(Shape):
    prompt: float | str | None = None
    completion: float | str | None = None
    request: float | str | None = None
    image: float | str | None = None


class ProviderPreferences(Shape):
    """OpenRouter-compatible routing preferences, consumed by the gateway (never sent upstream)."""

    order: list[str] | None = Field(default=None, description="Provider ids to try first, in order")
    only: list[str] | None = Field(default=None, description="A hard allowlist of provider ids")
    ignore: list[str] | None = None
    allow_fallbacks: bool = Field(default=True, description="false: exactly the first eligible provider")
    sort: Literal["price", "latency", "throughput"] = "price"
    max_price: MaxPrice | None = Field(
        default=None, description="USD per million tokens (per image, request)"
    )


class Routing(Shape):
    models: list[str] | None = Field(
        default=None, description="Fallback models, tried in order after `model`"
    )
    provider: ProviderPreferences | None = None


class Sampling(Shape):
    max_tokens: int | None = Field(
        default=None, description="Output budget; it bounds the credit reservation"
    )
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


class ChatCompletionRequest(Routing, Sampling):
    """The whole OpenAI chat request. `model` is `org/model`, a bare alias, `provider:model`, a
    `:free` variant, or `local:<id>`."""

    model: str
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = Field(default=None, description="json_object or json_schema")
    reasoning_effort: str | None = None
    service_tier: str | None = None
    metadata: dict[str, str] | None = None


class CompletionRequest(Routing, Sampling):
    """The legacy text completion request (served on top of chat)."""

    model: str
    prompt: str | list[str]
    echo: bool | None = None
    suffix: str | None = None


class PromptTokensDetails(Shape):
    cached_tokens: int = 0


class CompletionTokensDetails(Shape):
    reasoning_tokens: int = 0


class Usage(Shape):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    cost: float = Field(description="USD charged, a number written from the exact decimal")


class AssistantMessage(Shape):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = Field(default=None, description="The upstream's reasoning, when given")


class Choice(Shape):
    index: int
    message: AssistantMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletion(Shape):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class ChunkChoice(Shape):
    index: int
    delta: dict[str, Any] = Field(description="role, content, tool_calls (partial), reasoning_content")
    finish_reason: str | None = None


class ChatCompletionChunk(Shape):
    """One SSE event; an error after the first byte is an event `{"error": {...}}` before [DONE]."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class TextChoice(Shape):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class Completion(Shape):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None
