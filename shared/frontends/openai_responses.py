"""The OpenAI Responses front end (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`,
SPEC §2.3): what the `openai` SDK's `responses` and the Vercel AI SDK's default OpenAI provider
speak.

A request is checked here for what the gateway itself depends on, then handed to the pipeline
twice over: as written, for offers of providers that serve the Responses API themselves
(`responses_to_responses`, a pass-through), and in the pivot for every other offer
(`responses_to_openai`). Answers and streams come back in the Responses shape either way, with an
id the gateway minted (`resp_…`) and `usage.cost`. Errors use OpenAI's envelope.

State: OpenAI stores every response unless told `store: false`. Gatewayz stores one only when the
caller says `store: true` — a stored response holds the caller's prompts, so keeping them is the
caller's choice, never a default. A stored response belongs to its user (any of the user's keys
reads it; another user gets a 404), lives GATEWAYZ_RESPONSES_RETENTION_DAYS, and continues a
conversation: `previous_response_id` puts its input and output before the new input, for native
offers too (the upstream itself is always told `store: false`). It is written after the answer,
off its latency (`shared.store.responses`).
"""

from __future__ import annotations

import re
import secrets
import time
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from shared.auth import Principal
from shared.billing import money
from shared.dialects.base import ChatTranslator, Usage
from shared.dialects.responses_to_openai import (
    ChatToResponsesStream,
    Echo,
    chat_to_output,
    input_items,
    responses_to_chat,
    responses_usage,
    sse_event,
)
from shared.dialects.responses_to_responses import TERMINAL, ResponsesEvent
from shared.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound, status_of
from shared.pipeline.call import Call
from shared.pipeline.frontend import FrontEnd, Inbound, StreamWriter
from shared.runtime import Runtime

RESPONSE_ID = re.compile(r"^resp_[A-Za-z0-9]{1,64}$")
ROLES = frozenset({"user", "assistant", "system", "developer"})
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})
FORMATS = frozenset({"text", "json_object", "json_schema"})
# https://platform.openai.com/docs/api-reference/responses/create: item types with required fields.
_ITEM_FIELDS = {
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id",),
}


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {message}", param=param)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high
    ):
        raise _bad(f"expected a number between {low:g} and {high:g}.", name)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _check_parts(parts: Any, where: str) -> None:
    """Content parts: what the gateway reads of each must have its type (other part types are the
    upstream's to judge, or make the request native-only)."""
    if not isinstance(parts, list):
        raise _bad("expected a string or a list of content parts.", where)
    for j, part in enumerate(parts):
        at = f"{where}[{j}]"
        if not isinstance(part, dict) or not _text(part.get("type")):
            raise _bad("expected a content part with a type.", at)
        kind = part["type"]
        if kind in ("input_text", "output_text") and not _text(part.get("text")):
            raise _bad("expected a string.", f"{at}.text")
        if kind == "refusal" and not _text(part.get("refusal")):
            raise _bad("expected a string.", f"{at}.refusal")
        sources = {
            "input_image": ("image_url", "file_id"),
            "input_file": ("file_data", "file_url", "file_id"),
        }
        if kind in sources and not any(_text(part.get(name)) for name in sources[kind]):
            raise _bad(f"expected one of {', '.join(sources[kind])} as a string.", at)


def _check_item(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise _bad("expected an object.", where)
    kind = item.get("type")
    if kind is not None and not _text(kind):
        raise _bad("expected a string.", f"{where}.type")
    if kind is None or kind == "message":
        if not (_text(item.get("role")) and item["role"] in ROLES):
            raise _bad("expected role to be one of user, assistant, system, developer.", f"{where}.role")
        if not _text(item.get("content")):
            _check_parts(item.get("content"), f"{where}.content")
    elif kind == "item_reference":
        # The Vercel AI SDK sends these for earlier answers unless told `store: false` (it assumes
        # OpenAI's default, storing): the message says how to make it send the items instead.
        raise _bad(
            "item references are not supported: Gatewayz keeps no items unless asked and continues "
            "conversations by previous_response_id; send the item itself (the Vercel AI SDK does with "
            "providerOptions: { openai: { store: false } }).",
            where,
        )
    for name in _ITEM_FIELDS.get(kind or "", ()):
        if not _text(item.get(name)):
            raise _bad("expected a string.", f"{where}.{name}")
    if kind == "function_call_output" and not _text(item.get("output")):
        _check_parts(item.get("output"), f"{where}.output")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("expected an array of tools.", "tools")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise _bad("expected a tool object with a type.", f"tools[{i}]")
            if tool["type"] == "function":
                if not isinstance(tool.get("name"), str) or not tool["name"]:
                    raise _bad("expected a function name.", f"tools[{i}].name")
                if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
                    raise _bad("expected a JSON schema object.", f"tools[{i}].parameters")
    choice = body.get("tool_choice")
    if choice is None or (_text(choice) and choice in TOOL_CHOICES):
        return
    if not isinstance(choice, dict) or not _text(choice.get("type")):
        raise _bad("expected none, auto, required or a tool choice object.", "tool_choice")
    if choice["type"] == "function" and not _text(choice.get("name")):
        raise _bad("expected a function name.", "tool_choice.name")
    if choice["type"] == "allowed_tools":
        allowed = choice.get("tools")
        if not (
            isinstance(allowed, list) and all(isinstance(t, dict) and _text(t.get("type")) for t in allowed)
        ):
            raise _bad("expected a list of tools with a type.", "tool_choice.tools")
        if choice.get("mode") not in (None, "auto", "required"):
            raise _bad("expected auto or required.", "tool_choice.mode")


def _check_text(body: dict[str, Any]) -> None:
    text = body.get("text")
    if text is None:
        return
    if not isinstance(text, dict):
        raise _bad("expected an object.", "text")
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or not (_text(fmt.get("type")) and fmt["type"] in FORMATS):
        raise _bad("expected a format of type text, json_object or json_schema.", "text.format")
    if fmt["type"] == "json_schema":
        if not isinstance(fmt.get("name"), str) or not fmt["name"]:
            raise _bad("expected a name.", "text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            raise _bad("expected a JSON schema object.", "text.format.schema")


def check_responses(body: Any) -> None:
    """What the gateway depends on, with OpenAI's parameter paths in the message."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("a model is required.", "model")
    raw = body.get("input")
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            _check_item(item, f"input[{i}]")
    elif not isinstance(raw, str):
        raise _bad("expected a string or an array of input items.", "input")
    if not raw and not body.get("previous_response_id"):
        raise _bad("input must not be empty.", "input")
    for name in ("instructions", "user"):
        if body.get(name) is not None and not _text(body[name]):
            raise _bad("expected a string.", name)
    _check_tools(body)
    _check_text(body)
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if reasoning is not None and (
        not isinstance(reasoning, dict) or not (effort is None or (_text(effort) and effort in EFFORTS))
    ):
        raise _bad(f"expected effort to be one of {', '.join(sorted(EFFORTS))}.", "reasoning.effort")
    tokens = body.get("max_output_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise _bad("expected an integer of at least 1.", "max_output_tokens")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    for name in ("stream", "store", "parallel_tool_calls", "background"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise _bad("expected a boolean.", name)
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise _bad("expected an object of string values.", "metadata")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise _bad("expected a string.", "previous_response_id")
    if body.get("background"):
        raise _bad("background responses are not supported: use stream for long answers.", "background")
    if body.get("conversation") is not None:
        raise _bad("conversations are not supported: continue with previous_response_id.", "conversation")


def replayable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as OpenAI takes them back with `store: false`: item ids refer to nothing stored there
    (dropped), and a reasoning item travels only with its encrypted content
    (https://platform.openai.com/docs/guides/reasoning#encrypted-reasoning-items)."""
    out = []
    for item in items:
        if item.get("type") == "reasoning":
            if item.get("encrypted_content"):
                out.append(item)
            continue
        out.append({k: v for k, v in item.items() if k != "id"})
    return out


def _error(err: GatewayError) -> dict[str, Any]:
    """A failed response's `error`: OpenAI's codes have no room for ours, so only the rate limit
    is told apart (https://platform.openai.com/docs/api-reference/responses/object#responses/object-error)."""
    limited = status_of(err) == 429 or err.code == "429"
    return {"code": "rate_limit_exceeded" if limited else "server_error", "message": err.message}


class OpenAIResponses(FrontEnd):
    """One Responses request (an instance per request: it holds the conversation and the id)."""

    api = "responses"
    endpoint = "responses"
    native_offers = "OpenAI models served through OpenAI's own Responses API"
    # `reasoning` is the caller's own here (OpenRouter's synonym in chat): only routing is consumed.
    consumed = ("models", "provider", "route", "transforms")

    def __init__(
        self, rt: Runtime, principal: Principal, body: dict[str, Any], history: list[dict[str, Any]]
    ) -> None:
        self.rt = rt
        self.principal = principal
        self.body = body
        self.history = history
        self.store = body.get("store") is True
        self.stores_history = self.store  # a stored response is kept in chat history too
        self.echo = Echo(
            f"resp_{secrets.token_hex(24)}", str(body["model"]), int(time.time()), body, self.store
        )

    def inbound(self) -> Inbound:
        converted = responses_to_chat(self.body, self.history)
        native = self.body
        if self.history or isinstance(self.body["input"], list):
            # Upstream nothing is stored: items go as OpenAI takes them back then, the caller's own
            # too (output items passed back by hand, as OpenAI's docs show, carry ids and reasoning).
            native = {**self.body, "input": replayable([*self.history, *input_items(self.body)])}
        return Inbound(converted.body, native, {}, converted.dropped, converted.native_only)

    def usage(self, usage: Usage, cost: Decimal, raw: Any = None) -> dict[str, Any]:
        out = dict(raw) if isinstance(raw, dict) else responses_usage(usage)
        # A JSON number written from the exact decimal (as chat's usage.cost), never via a float.
        out["cost"] = orjson.Fragment(money(cost).encode())
        return out

    def native(self, response: dict[str, Any], model_id: str) -> dict[str, Any]:
        """An upstream response object as this gateway's: its id, model and state."""
        return {
            **response,
            "id": self.echo.id,
            "model": model_id,
            "store": self.store,
            "previous_response_id": self.body.get("previous_response_id"),
        }

    def keep(self, response: dict[str, Any]) -> None:
        if self.store and self.principal.user_id is not None:
            self.rt.responses.keep(self.principal.user_id, [*self.history, *input_items(self.body)], response)

    def response(
        self, answer_body: dict[str, Any], tr: ChatTranslator, usage: Usage, cost: Decimal
    ) -> dict[str, Any]:
        if tr.source == self.api:
            out = self.native(answer_body, tr.model_id)
            out["usage"] = self.usage(usage, cost, answer_body.get("usage"))
        else:
            self.echo.model = tr.model_id
            output, incomplete = chat_to_output(answer_body)
            status = "incomplete" if incomplete else "completed"
            out = self.echo.response(status, output, self.usage(usage, cost), incomplete=incomplete)
        self.keep(out)
        return out

    def writer(self, call: Call, tr: ChatTranslator, model_id: str) -> StreamWriter:
        self.echo.model = model_id
        if tr.source == self.api:
            return NativeWriter(self, model_id)
        return PivotWriter(self, ChatToResponsesStream(self.echo))


class NativeWriter(StreamWriter):
    """A Responses upstream's events, forwarded as they came; the lifecycle events (which carry the
    response object) get the gateway's id, and the last one waits for the cost."""

    def __init__(self, front: OpenAIResponses, model_id: str) -> None:
        self.front = front
        self.model_id = model_id
        self.seq = 0  # events passed on so far: the next sequence number
        self.final: ResponsesEvent | None = None

    def items(self, items: list[Any]) -> bytes:
        out = []
        for item in items:
            if not isinstance(item, ResponsesEvent):
                continue
            self.seq += 1
            if item.obj is None:
                out.append(b"event: " + item.name.encode() + b"\ndata: " + item.data + b"\n\n")
            elif item.name in TERMINAL:
                self.final = item
            else:
                out.append(sse_event({**item.obj, "response": self._response(item.obj)}))
        return b"".join(out)

    def _response(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.front.native(obj.get("response") or {}, self.model_id)

    def end(self, usage: Usage, cost: Decimal) -> bytes:
        if self.final is None or self.final.obj is None:
            return b""
        response = self._response(self.final.obj)
        response["usage"] = self.front.usage(usage, cost, response.get("usage"))
        self.front.keep(response)
        return sse_event({**self.final.obj, "response": response})

    def error(self, err: GatewayError, request_id: str) -> bytes:
        failed = self.front.echo.response("failed", [], error=_error(err))
        return sse_event({"type": "response.failed", "sequence_number": self.seq, "response": failed})


class PivotWriter(StreamWriter):
    """A pivot stream (any other upstream) written as the Responses event sequence."""

    def __init__(self, front: OpenAIResponses, stream: ChatToResponsesStream) -> None:
        self.front = front
        self.stream = stream

    def items(self, items: list[Any]) -> bytes:
        return self.stream.feed(items)

    def end(self, usage: Usage, cost: Decimal) -> bytes:
        data, final = self.stream.end(self.front.usage(usage, cost))
        self.front.keep(final)
        return data

    def error(self, err: GatewayError, request_id: str) -> bytes:
        return self.stream.failed(_error(err))


# --- the entry points ----------------------------------------------------------------------------
def _owner(principal: Principal, why: str) -> str:
    if principal.user_id is None:
        raise AuthenticationFailed(f"An API key is required {why}: stored responses belong to a user.",
                                   code="missing_api_key")  # fmt: skip
    return principal.user_id


async def responses_front(rt: Runtime, body: Any, principal: Principal) -> OpenAIResponses:
    """The front end of one `POST /v1/responses`: checked, with the conversation it continues."""
    check_responses(body)
    history: list[dict[str, Any]] = []
    previous = body.get("previous_response_id")
    if body.get("store") is True:
        _owner(principal, "to store a response")
    if previous:
        user_id = _owner(principal, "to continue a stored response")
        stored = await rt.responses.get(user_id, previous) if RESPONSE_ID.match(previous) else None
        if stored is None:
            raise NotFound(f"Previous response with id '{previous}' not found.", param="previous_response_id")
        history = stored.conversation
    return OpenAIResponses(rt, principal, body, history)


async def retrieve(rt: Runtime, principal: Principal, response_id: str, stream: str | None) -> Response:
    """GET /v1/responses/{id}: the caller's stored response, as it was returned."""
    user_id = _owner(principal, "to read a stored response")
    if stream is not None and stream.lower() not in ("false", "0"):
        raise _bad("replaying a stored response as a stream is not supported.", "stream")
    stored = await rt.responses.get(user_id, response_id) if RESPONSE_ID.match(response_id) else None
    if stored is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return Response(stored.raw, media_type="application/json")


async def delete(rt: Runtime, principal: Principal, response_id: str) -> Response:
    """DELETE /v1/responses/{id}: the caller's stored response, gone."""
    user_id = _owner(principal, "to delete a stored response")
    if not (RESPONSE_ID.match(response_id) and await rt.responses.delete(user_id, response_id)):
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    body = {"id": response_id, "object": "response", "deleted": True}
    return Response(orjson.dumps(body), media_type="application/json")
