"""Validation of an OpenAI chat request, by hand and once (no Pydantic on the hot path).

It checks what Gatewayz itself depends on and what every vendor would reject anyway, with a 400
that names the parameter; everything else passes through untouched (unknown fields go to
OpenAI-dialect upstreams as the caller wrote them, SPEC §2.1). It also derives what routing needs:
the capabilities the request requires, and whether the caller wants stream usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.config import DEFAULT_MAX_N
from shared.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Each content part's payload field and the fields inside it that the translators read, with
# their JSON types, as OpenAI documents them
# (https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages); a wrong type
# is a 400 here, for every dialect, rather than a translator failing on it. `image_url` may also
# be the URL itself, a shorthand many clients send.
PART_FIELDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "text": ("text", (str,)),
    "refusal": ("refusal", (str,)),
    "image_url": ("image_url", (dict, str)),
    "input_audio": ("input_audio", (dict,)),
    "file": ("file", (dict,)),
}
PART_INNER: dict[str, tuple[tuple[str, bool], ...]] = {  # (string field, required)
    "image_url": (("url", True), ("detail", False)),
    "input_audio": (("data", True), ("format", True)),
    "file": (("file_data", False), ("file_id", False), ("filename", False)),
}
PART_TYPES = frozenset(PART_FIELDS)
REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
# Consumed by Gatewayz and never sent upstream (real vendors reject unknown fields).
GATEWAY_FIELDS = ("models", "provider", "route", "transforms", "usage", "reasoning")


@dataclass(slots=True)
class ChatParams:
    stream: bool
    include_usage: bool
    n: int
    needs: frozenset[str]
    max_output: int | None
    images: int = 0  # images a generation asks for: the reservation covers each
    image_kind: tuple[str, str] = ("", "")  # their (quality, size), as asked


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is not None and (not _is_num(value) or not low <= value <= high):
        raise InvalidRequest(f"'{name}' must be a number between {low:g} and {high:g}", param=name)


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequest(f"'{name}' must be an integer {bound}", param=name)
    return int(value)


def _check_messages(messages: Any, needs: set[str]) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"'{where}.role' must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role"
            )
        content = message.get("content")
        if content is None:
            # Only an assistant turn may omit content (it then carries tool calls, or nothing).
            if role != "assistant":
                raise InvalidRequest(f"'{where}.content' is required", param=f"{where}.content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                ptype = part.get("type") if isinstance(part, dict) else None
                if ptype not in PART_TYPES:
                    raise InvalidRequest(
                        f"'{where}.content[{j}].type' must be one of {', '.join(sorted(PART_TYPES))}",
                        param=f"{where}.content[{j}].type",
                    )
                _check_part(part, ptype, f"{where}.content[{j}]")
                if ptype == "image_url":
                    needs.add("vision")
                elif ptype == "input_audio":
                    needs.add("audio_input")
                elif ptype == "file":
                    needs.add("file_input")
        elif not isinstance(content, str):
            raise InvalidRequest(
                f"'{where}.content' must be a string or an array of parts", param=f"{where}.content"
            )
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise InvalidRequest(
                f"'{where}.tool_call_id' is required for tool messages", param=f"{where}.tool_call_id"
            )
        calls = message.get("tool_calls")
        if calls is not None:
            if role != "assistant" or not isinstance(calls, list):
                raise InvalidRequest(
                    f"'{where}.tool_calls' must be an array on an assistant message",
                    param=f"{where}.tool_calls",
                )
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if (
                    not isinstance(fn, dict)
                    or not isinstance(fn.get("name"), str)
                    or not isinstance(call.get("id"), str)
                ):
                    raise InvalidRequest(
                        f"'{where}.tool_calls[{j}]' needs an id and a function name",
                        param=f"{where}.tool_calls[{j}]",
                    )


def _check_part(part: dict[str, Any], ptype: str, where: str) -> None:
    name, kinds = PART_FIELDS[ptype]
    value = part.get(name)
    if not isinstance(value, kinds):
        what = "a string" if kinds == (str,) else "an object" if kinds == (dict,) else "a string or an object"
        raise InvalidRequest(f"'{where}.{name}' must be {what}", param=f"{where}.{name}")
    if isinstance(value, dict):
        for field, required in PART_INNER[ptype]:
            inner = value.get(field)
            if (inner is not None or required) and not isinstance(inner, str):
                param = f"{where}.{name}.{field}"
                raise InvalidRequest(f"'{param}' must be a string", param=param)
        if ptype == "file" and value.get("file_data") is None and value.get("file_id") is None:
            raise InvalidRequest(f"'{where}.file' needs file_data or file_id", param=f"{where}.file")


def _check_tools(body: dict[str, Any], needs: set[str]) -> None:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequest(f"'tools[{i}]' must be a function tool", param=f"tools[{i}]")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidRequest(f"'tools[{i}].function.name' is required", param=f"tools[{i}].function.name")
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
            raise InvalidRequest(
                f"'tools[{i}].function.parameters' must be an object", param=f"tools[{i}].function.parameters"
            )
    if tools:
        needs.add("tools")
    choice = body.get("tool_choice")
    if choice is not None and not (
        choice in ("none", "auto", "required")
        or (isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str))
    ):
        raise InvalidRequest(
            "'tool_choice' must be none, auto, required or a named function", param="tool_choice"
        )


def _check_response_format(body: dict[str, Any], needs: set[str]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    ftype = fmt.get("type") if isinstance(fmt, dict) else None
    if ftype == "json_schema":
        spec = fmt.get("json_schema")
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("schema", {}), dict)
        ):
            raise InvalidRequest(
                "'response_format.json_schema' needs a name and a schema object",
                param="response_format.json_schema",
            )
        needs.add("json_schema")
    elif ftype == "json_object":
        needs.add("json_mode")
    elif ftype != "text":
        raise InvalidRequest(
            "'response_format.type' must be text, json_object or json_schema", param="response_format.type"
        )


def check_chat(body: Any, max_n: int = DEFAULT_MAX_N) -> ChatParams:
    """`max_n`: the most choices a request may ask for (`GATEWAYZ_MAX_N`)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    needs: set[str] = set()
    _check_messages(body.get("messages"), needs)
    _check_tools(body, needs)
    _check_response_format(body, needs)
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object", param="stream_options")
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true", param="stream_options"
            )
    n = _integer(body, "n", 1, max_n) or 1
    max_tokens = _integer(body, "max_tokens", 1)
    max_completion = _integer(body, "max_completion_tokens", 1)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    top_logprobs = _integer(body, "top_logprobs", 0, 20)
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise InvalidRequest("'logprobs' must be a boolean", param="logprobs")
    if top_logprobs is not None and not logprobs:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true", param="top_logprobs")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")
    _check_reasoning(body)
    if body.get("logit_bias") is not None and not isinstance(body["logit_bias"], dict):
        raise InvalidRequest("'logit_bias' must be an object", param="logit_bias")
    return ChatParams(
        stream=bool(stream),
        include_usage=bool(options and options.get("include_usage")),
        n=n,
        needs=frozenset(needs),
        max_output=max_completion or max_tokens,
    )


def _check_reasoning(body: dict[str, Any]) -> None:
    effort = body.get("reasoning_effort")
    # OpenRouter's `reasoning: {effort}` is accepted as a synonym (it is consumed, not forwarded).
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise InvalidRequest("'reasoning' must be an object", param="reasoning")
        if effort is None and reasoning.get("effort") is not None:
            effort = reasoning["effort"]
            body["reasoning_effort"] = effort
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' must be one of {', '.join(sorted(REASONING_EFFORTS))}",
            param="reasoning_effort",
        )


def upstream_body(body: dict[str, Any], consumed: tuple[str, ...] = GATEWAY_FIELDS) -> dict[str, Any]:
    """The caller's body without the fields Gatewayz consumes."""
    if any(k in body for k in consumed):
        return {k: v for k, v in body.items() if k not in consumed}
    return body
