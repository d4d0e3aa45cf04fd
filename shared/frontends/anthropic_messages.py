"""The Anthropic Messages front end (`POST /v1/messages`, `POST /v1/messages/count_tokens`,
SPEC §2.2): what the `anthropic` SDK and Claude Code speak.

A request is checked here for what the gateway itself depends on (everything else is the
upstream's to judge), then handed to the pipeline twice over: as written, for Anthropic offers
(`anthropic_to_anthropic`, a pass-through), and in the pivot for every other offer
(`anthropic_to_openai`). Answers and streams come back in the Messages shape either way.
Errors use Anthropic's envelope (rendered by the app for every `/v1/messages` route).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from shared.auth import Principal
from shared.dialects import native_translator_class
from shared.dialects.anthropic_to_anthropic import Event, event_bytes
from shared.dialects.anthropic_to_openai import (
    ChatToMessagesStream,
    chat_to_message,
    messages_to_chat,
    sse_event,
)
from shared.dialects.base import ChatTranslator, Usage
from shared.errors import GatewayError, InvalidRequest, status_of
from shared.pipeline.call import Call
from shared.pipeline.frontend import FrontEnd, Inbound, StreamWriter
from shared.pipeline.run import allowed
from shared.routing.context import RequestContext
from shared.routing.failover import failover
from shared.routing.plan import Candidate, parse_preferences
from shared.runtime import Runtime
from shared.tokens import estimate_prompt
from shared.transport.errors import UpstreamError
from shared.transport.upstream import read_body

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
ROLES = frozenset({"user", "assistant", "system"})
THINKING = frozenset({"enabled", "adaptive", "disabled"})
TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


# The fields of the content blocks that the translation reads, with their JSON types and whether
# they are required (https://platform.claude.com/docs/en/api/messages): a wrong type is a 400, as
# Anthropic answers it, before any translator reads it. Other block types pass as written.
BLOCK_FIELDS: dict[str, tuple[tuple[str, tuple[type, ...], bool], ...]] = {
    "text": (("text", (str,), True),),
    "image": (("source", (dict,), True),),
    "document": (("source", (dict,), True), ("title", (str,), False)),
    "tool_use": (("id", (str,), True), ("name", (str,), True), ("input", (dict,), True)),
    "tool_result": (("tool_use_id", (str,), True), ("content", (str, list), False)),
    "thinking": (("thinking", (str,), True), ("signature", (str,), True)),
    "redacted_thinking": (("data", (str,), True),),
}
SOURCE_FIELDS = {"base64": ("media_type", "data"), "url": ("url",), "text": ("data",)}


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad("Input should be a valid string or a list of content blocks", where)
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad("each content block must be an object with a type", f"{where}.{j}")
        for name, kinds, required in BLOCK_FIELDS.get(block["type"], ()):
            value = block.get(name)
            if (value is not None or required) and not isinstance(value, kinds):
                raise _bad(
                    f"Input should be a valid {' or '.join(k.__name__ for k in kinds)}", f"{where}.{j}.{name}"
                )
        source = block.get("source")
        if isinstance(source, dict) and block["type"] in ("image", "document"):
            for name in SOURCE_FIELDS.get(str(source.get("type")), ()):
                if not isinstance(source.get(name), str):
                    raise _bad("Input should be a valid string", f"{where}.{j}.source.{name}")
        if isinstance(block.get("content"), list) and block["type"] == "tool_result":
            _check_content(block["content"], f"{where}.{j}.content")


def _text_blocks(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in value)


def check_messages(body: Any) -> None:
    """What the gateway depends on, with Anthropic's parameter paths in the message."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("Field required", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("Field required (an integer of at least 1)", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("at least one message is required", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise _bad("Input should be 'user', 'assistant' or 'system'", f"messages.{i}.role")
        _check_content(m.get("content"), f"messages.{i}.content")
    system = body.get("system")
    if not (system is None or isinstance(system, str) or _text_blocks(system)):
        raise _bad("Input should be a valid string or a list of text blocks", "system")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("Input should be a valid list", "tools")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _bad("Field required", f"tools.{k}.name")
            if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
                raise _bad("Field required", f"tools.{k}.input_schema")
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES):
        raise _bad("Input should be auto, any, tool or none", "tool_choice")
    thinking = body.get("thinking")
    if thinking is not None and (not isinstance(thinking, dict) or thinking.get("type") not in THINKING):
        raise _bad("Input should be enabled, adaptive or disabled", "thinking")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise _bad("Input should be a list of strings", "stop_sequences")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
        ):
            raise _bad("Input should be a number between 0 and 1", name)
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise _bad("Input should be a non-negative integer", "top_k")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("Input should be a valid boolean", "stream")
    for name in ("metadata", "output_config"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise _bad("Input should be a valid object", name)


def inbound(body: Any, headers: Mapping[str, str]) -> Inbound:
    check_messages(body)
    converted = messages_to_chat(body)
    forwarded = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
    return Inbound(converted.body, body, forwarded, converted.dropped, converted.native_only)


def _message_id(tr: ChatTranslator) -> str:
    rid = tr.response_id
    return rid if rid.startswith("msg_") else f"msg_{rid or secrets.token_hex(12)}"


def error_event(err: GatewayError, request_id: str) -> bytes:
    body: dict[str, Any] = {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}
    if request_id:
        body["request_id"] = request_id
    return sse_event("error", body)


class NativeWriter(StreamWriter):
    """An Anthropic upstream's events, forwarded as they came (its message_stop included)."""

    def items(self, items: list[Any]) -> bytes:
        return b"".join([event_bytes(item) for item in items if isinstance(item, Event)])

    def end(self, usage: Usage, cost: Decimal) -> bytes:
        return b""

    def error(self, err: GatewayError, request_id: str) -> bytes:
        return error_event(err, request_id)


class PivotWriter(StreamWriter):
    """A pivot stream (any other upstream) written as the Messages event sequence."""

    def __init__(self, stream: ChatToMessagesStream) -> None:
        self.stream = stream

    def items(self, items: list[Any]) -> bytes:
        return self.stream.feed(items)

    def end(self, usage: Usage, cost: Decimal) -> bytes:
        return self.stream.end(usage)

    def error(self, err: GatewayError, request_id: str) -> bytes:
        return error_event(err, request_id)


class AnthropicMessages(FrontEnd):
    api = "anthropic"
    endpoint = "messages"
    native_offers = "anthropic models"

    def response(
        self, answer_body: dict[str, Any], tr: ChatTranslator, usage: Usage, cost: Decimal
    ) -> dict[str, Any]:
        if tr.source == self.api:
            return answer_body  # the upstream's own message
        return chat_to_message(answer_body, usage, tr.model_id, _message_id(tr))

    def writer(self, call: Call, tr: ChatTranslator, model_id: str) -> StreamWriter:
        if tr.source == self.api:
            return NativeWriter()
        return PivotWriter(ChatToMessagesStream(model_id, _message_id(tr), estimate_prompt(call.body)))


MESSAGES = AnthropicMessages()


# --- count_tokens ----------------------------------------------------------------------------------
COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "output_config")


async def count_tokens(
    rt: Runtime, body: Any, headers: Mapping[str, str], ctx: RequestContext, principal: Principal
) -> Response:
    """Anthropic's own count for Claude models (their tokenizer is not public), else an estimate
    from the pivot — said so in `x-gatewayz-estimated`. Free; limited like any request."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    check_messages({**body, "max_tokens": 1})
    converted = messages_to_chat({**body, "max_tokens": 1})
    await rt.health.refresh()
    plan = rt.router.plan(converted.body, frozenset(), parse_preferences(body.get("provider"), rt.endpoints))
    plan = allowed(plan, principal, str(body["model"]))
    assert principal.key is not None  # the route admits user keys only
    admission = await rt.limiter.admit(principal.key, ctx.billing_id, 0, ctx.take_deferred_ip())
    try:
        native = [
            c
            for c in plan
            if native_translator_class("anthropic", c.endpoint.provider.dialect, c.endpoint.provider.supports)
        ]
        out_headers = admission.headers()
        counted = await _upstream_count(rt, native, body, headers, ctx) if native else None
        if counted is None:
            counted = {"input_tokens": estimate_prompt(converted.body)}
            out_headers["x-gatewayz-estimated"] = "true"
        out_headers["x-gatewayz-model"] = plan[0].model_id
        return Response(orjson.dumps(counted), headers=out_headers, media_type="application/json")
    finally:
        await rt.limiter.finish(admission, None)


async def _upstream_count(
    rt: Runtime, plan: list[Candidate], body: dict[str, Any], headers: Mapping[str, str], ctx: RequestContext
) -> dict[str, Any] | None:
    """The upstream's count, failing over between Anthropic offers; None when none answered."""

    async def attempt(candidate: Candidate) -> dict[str, Any]:
        provider = candidate.endpoint.provider
        tr = native_translator_class("anthropic", provider.dialect, provider.supports)
        assert tr is not None
        request = {k: body[k] for k in COUNT_FIELDS if k in body}
        request["model"] = candidate.offer.offer.native_id
        sent = {**candidate.endpoint.headers, "content-type": "application/json"}
        sent.update({name: headers[name] for name in FORWARDED_HEADERS if name in headers})
        url = candidate.endpoint.base_url + "/v1/messages/count_tokens"
        resp = await rt.http.post(url, sent, orjson.dumps(request), limits=rt.http.call_timeout(30))
        raw = await read_body(resp)
        if resp.status >= 300:
            raise tr(model_id=candidate.model_id, native_id="").error(resp.status, resp.headers, raw)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("input_tokens"), int):
            raise UpstreamError(
                502, "the upstream answered count_tokens with an unexpected body", kind="protocol"
            )
        return data

    try:
        _, counted = await failover(plan, ctx, attempt, rt.settings.timeouts, rt.health)
    except GatewayError as exc:
        if 400 <= status_of(exc) < 500 and status_of(exc) != 429:
            raise  # the caller's own mistake, as Anthropic judged it
        return None  # no Anthropic offer answered: the estimate serves
    return counted
