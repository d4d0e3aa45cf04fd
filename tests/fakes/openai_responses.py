"""The fake OpenAI upstream's Responses API (`POST {prefix}/responses`, served by
tests.fakes.openai_fake.OpenAIFake): what OpenAI refuses, the response object, and the stream's
event sequence — https://platform.openai.com/docs/api-reference/responses and
https://platform.openai.com/docs/api-reference/responses-streaming."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.fakes.openai_fake import ROLES, openai_error
from tests.fakes.server import Reply, split_text, write_sse

if TYPE_CHECKING:
    from tests.fakes.openai_fake import OpenAIFake

# https://platform.openai.com/docs/api-reference/responses/create (openai-python's
# ResponseCreateParams).
RESPONSES_FIELDS = frozenset(
    {
        "access_programs", "background", "background_options", "context_management", "conversation",
        "image", "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata",
        "model", "moderation", "parallel_tool_calls", "previous_response_id", "prompt",
        "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning",
        "safety_identifier", "service_tier", "store", "stream", "stream_options", "temperature", "text",
        "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
    }
)  # fmt: skip
RESPONSES_ITEMS = frozenset(
    {
        "message", "function_call", "function_call_output", "reasoning", "item_reference",
        "web_search_call", "file_search_call", "computer_call", "computer_call_output",
        "code_interpreter_call", "image_generation_call", "local_shell_call", "local_shell_call_output",
        "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "mcp_call",
        "custom_tool_call", "custom_tool_call_output", "shell_call", "shell_call_output",
        "apply_patch_call", "apply_patch_call_output", "compaction",
    }
)  # fmt: skip
RESPONSES_TOOLS = frozenset(
    {
        "function", "file_search", "computer_use_preview", "computer", "web_search", "web_search_preview",
        "mcp", "code_interpreter", "image_generation", "local_shell", "shell", "custom", "apply_patch",
        "tool_search", "namespace",
    }
)  # fmt: skip


def refusal(body: dict[str, Any]) -> web.Response | None:
    """What OpenAI refuses in a Responses request (the checks a gateway bug would trip)."""
    raw = body.get("input")
    if not isinstance(raw, str | list):
        return openai_error(400, "Invalid type for 'input'.", param="input")
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind not in RESPONSES_ITEMS or (kind == "message" and item.get("role") not in ROLES):
            return openai_error(400, f"Invalid value for 'input[{i}]'.", param=f"input[{i}]")
        stored = kind == "item_reference" or (kind == "reasoning" and not item.get("encrypted_content"))
        if stored and body.get("store") is False:
            # https://platform.openai.com/docs/guides/conversation-state: nothing is kept then.
            return openai_error(
                404,
                f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is "
                "set to false.",
                param="input",
            )
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or tool.get("type") not in RESPONSES_TOOLS:
            return openai_error(400, f"Invalid value for 'tools[{i}].type'.", param=f"tools[{i}].type")
        if tool["type"] == "function" and not tool.get("name"):
            return openai_error(400, "Missing required parameter: 'tools[0].name'.", param=f"tools[{i}].name")
    if body.get("previous_response_id"):
        previous = body["previous_response_id"]
        return openai_error(
            404, f"Previous response with id '{previous}' not found.", param="previous_response_id"
        )
    if "stream_options" in body and not body.get("stream"):
        return openai_error(400, "stream_options requires stream", param="stream_options")
    return None


async def responses(fake: OpenAIFake, request: web.Request) -> web.StreamResponse:
    checked = await fake._validated(request, RESPONSES_FIELDS)
    if isinstance(checked, web.Response):
        return checked
    body, rec, _profile = checked
    refused = refusal(body)
    if refused is not None:
        return refused
    reply = fake.next_reply(body["model"])
    if reply.delay:
        await asyncio.sleep(reply.delay)
    if reply.status != 200:
        return openai_error(reply.status, reply.error_message, retry_after=reply.retry_after)
    if body.get("stream"):
        events = response_events(body, reply)
        error = sse(
            "error",
            {
                "type": "error",
                "code": "server_error",
                "message": "fake mid-stream failure",
                "param": None,
            },
        )
        return await write_sse(request, rec, fake, events, reply, error)
    rec.completed = True
    final = response_object(body, reply, response_output(reply))
    return web.json_response(final, dumps=lambda o: orjson.dumps(o).decode())


def response_usage(reply: Reply) -> dict[str, Any]:
    prompt = reply.input + reply.cached
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": reply.cached, "cache_write_tokens": reply.cache_write},
        "output_tokens": reply.output,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": prompt + reply.output,
    }


def response_output(reply: Reply) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if reply.reasoning:
        output.append(
            {
                "id": "rs_fake",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": reply.reasoning}],
            }
        )
    for j, tc in enumerate(reply.tool_calls):
        output.append(
            {
                "id": f"fc_fake{j}",
                "type": "function_call",
                "status": "completed",
                "arguments": orjson.dumps(tc.arguments).decode(),
                "call_id": tc.id or f"call_fake{j}",
                "name": tc.name,
            }
        )
    if not reply.tool_calls:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": reply.text}
        output.append(
            {
                "id": "msg_fake",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    return output


def response_object(
    body: dict[str, Any], reply: Reply, output: list[dict[str, Any]], status: str | None = None
) -> dict[str, Any]:
    incomplete = reply.finish_reason == "length"
    status = status or ("incomplete" if incomplete else "completed")
    done = status in ("completed", "incomplete")
    return {
        "id": "resp_fake123",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete and done else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": response_usage(reply) if done and not reply.omit_usage else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def response_events(body: dict[str, Any], reply: Reply) -> list[bytes]:
    """The whole event sequence OpenAI streams for this reply."""
    events: list[dict[str, Any]] = []

    def ev(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    ev("response.created", response=response_object(body, reply, [], "in_progress"))
    ev("response.in_progress", response=response_object(body, reply, [], "in_progress"))
    output = response_output(reply)
    for index, item in enumerate(output):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            ev(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            ev("response.content_part.added", **at, content_index=0, part=empty)
            for piece in split_text(reply.text, reply.chunks):
                ev("response.output_text.delta", **at, content_index=0, delta=piece, logprobs=[])
            ev("response.output_text.done", **at, content_index=0, text=reply.text, logprobs=[])
            ev("response.content_part.done", **at, content_index=0, part=item["content"][0])
        elif item["type"] == "function_call":
            ev(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in split_text(item["arguments"], reply.chunks):
                ev("response.function_call_arguments.delta", **at, delta=piece)
            ev("response.function_call_arguments.done", **at, arguments=item["arguments"])
        else:
            ev("response.output_item.added", output_index=index, item={**item, "summary": []})
            text = item["summary"][0]["text"]
            ev(
                "response.reasoning_summary_part.added",
                **at,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
            for piece in split_text(text, 2):
                ev("response.reasoning_summary_text.delta", **at, summary_index=0, delta=piece)
            ev("response.reasoning_summary_text.done", **at, summary_index=0, text=text)
            ev("response.reasoning_summary_part.done", **at, summary_index=0, part=item["summary"][0])
        ev("response.output_item.done", output_index=index, item=item)
    final = response_object(body, reply, output)
    ev(f"response.{final['status']}", response=final)
    return [sse(e["type"], e) for e in events]


def sse(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"
