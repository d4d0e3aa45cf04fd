"""A fake Anthropic upstream: POST /v1/messages and /v1/messages/count_tokens.

Written from the documented wire format (https://platform.claude.com/docs/en/api/messages,
https://platform.claude.com/docs/en/build-with-claude/streaming,
https://platform.claude.com/docs/en/api/errors) and the request types of the official SDK. It
rejects what the real API rejects, with Anthropic's own error envelope, so a translator bug
fails a test instead of passing silently: no key, no anthropic-version, unknown fields, a
missing max_tokens, system or tool roles in `messages`, an orphan tool_result, a tool_use left
without its result, out-of-range sampling, a bad thinking budget, thinking with forced tool use,
unknown block types, and the per-model rules below.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import FakeServer, Recorded, Reply, split_text, write_sse

# The fields of MessageCreateParams (anthropic SDK 2.14), plus the sampling fields that API version
# 2023-06-01 still takes and 2026-10-21 removed.
MESSAGE_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "cache_control", "container", "diagnostics",
        "inference_geo", "metadata", "output_config", "service_tier", "speed", "stop_sequences",
        "stream", "system", "thinking", "tool_choice", "tools", "user_profile_id", "workspace_id",
    }
)  # fmt: skip
SAMPLING = frozenset({"temperature", "top_p", "top_k"})
# Fields the API takes only with their beta named in `anthropic-beta`
# (https://platform.claude.com/docs/en/build-with-claude/context-editing, .../mcp-connector).
BETA_FIELDS = {"context_management": "context-management-2025-06-27", "mcp_servers": "mcp-client-2025-04-04"}
COUNT_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control"}
)
VERSIONS = frozenset(
    {"2023-01-01", "2023-06-01", "2026-10-21"}
)  # https://platform.claude.com/docs/en/api/versioning
BLOCK_TYPES = frozenset(
    {
        "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use",
        "tool_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
        "code_execution_tool_result", "container_upload",
    }
)  # fmt: skip
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# Per-model rules, by id prefix (model docs and migration guides):
# Opus 4.7 and later reject sampling parameters and manual thinking budgets.
NO_SAMPLING = ("claude-opus-4-7", "claude-opus-4-8", "claude-opus-5", "claude-sonnet-5", "claude-haiku-5",
               "claude-fable", "claude-mythos")  # fmt: skip
# Adaptive thinking arrived with 4.6, structured outputs (output_config.format) with 4.5.
NO_STRUCTURED = ("claude-3", "claude-sonnet-4-2", "claude-opus-4-2", "claude-opus-4-1")
NO_ADAPTIVE = (*NO_STRUCTURED, "claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5")
# Opus 4.8 and later take `system` turns inside `messages`
# (https://platform.claude.com/docs/en/about-claude/models/whats-new-claude-4-8).
SYSTEM_TURNS = (
    "claude-opus-4-8",
    "claude-opus-5",
    "claude-sonnet-5",
    "claude-haiku-5",
    "claude-fable",
    "claude-mythos",
)
# From 4.1 through 4.5: temperature or top_p, not both.
ONE_SAMPLER = ("claude-opus-4-1", "claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def anthropic_error(status: int, message: str, *, retry_after: int | None = None) -> web.Response:
    etype = ERROR_TYPES.get(status, "api_error")  # 503 and other statuses Anthropic does not document
    headers = {"request-id": "req_fake01"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake01"}
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def sse(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


VERTEX_VERSION = "vertex-2023-10-16"


class AnthropicFake(FakeServer):
    """Anthropic's API, and Claude on Vertex AI at
    /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict|streamRawPredict
    (https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude): the model
    in the URL and none in the body, `anthropic_version: vertex-2023-10-16` in the body, a bearer
    token (checked by `token_check` when set)."""

    def __init__(self) -> None:
        super().__init__()
        self.token_check: Any = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self.messages),
            web.post("/v1/messages/count_tokens", self.count_tokens),
            web.get("/v1/models", self.models),
            web.post(
                "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{call}", self.vertex
            ),
        ]

    async def models(self, request: web.Request) -> web.Response:
        from tests.fakes.model_lists import anthropic_models

        self.record(request, None)
        if "models" not in self.listings:
            return anthropic_error(404, "Not found")
        return anthropic_models(request, self.listings["models"], self.page_cap)

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        rec = self.record(request, {"model": model, **body} if isinstance(body, dict) else body, raw)
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or (
            self.token_check is not None and not self.token_check(bearer[7:])
        ):
            return anthropic_error(401, "Request had invalid authentication credentials.")
        try:
            if method not in ("rawPredict", "streamRawPredict"):
                raise BadRequest(f"unknown method {method}", 404)
            if not isinstance(body, dict):
                raise BadRequest("There was an issue with your request body: not valid JSON")
            if body.get("anthropic_version") != VERTEX_VERSION:
                raise BadRequest(f"anthropic_version: must be {VERTEX_VERSION!r}")
            for key in body:
                if key not in MESSAGE_FIELDS | SAMPLING | {"anthropic_version"} or key == "model":
                    raise BadRequest(f"{key}: Extra inputs are not permitted")
            body = {k: v for k, v in body.items() if k != "anthropic_version"}
            body["model"] = model
            self._check_messages(body.get("messages"), model)
            self._check_system(body.get("system"))
            self._check_tools(body)
            self._check_params(body)
        except BadRequest as exc:
            return anthropic_error(exc.status, exc.message)
        if bool(body.get("stream")) != (method == "streamRawPredict"):
            return anthropic_error(400, "stream must match the method (streamRawPredict)")
        return await self._answer(request, rec, body)

    # --- validation ------------------------------------------------------------------------------
    async def _checked(self, request: web.Request, fields: frozenset[str]) -> tuple[dict[str, Any], Any]:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        rec = self.record(request, body, raw)
        auth = request.headers.get("authorization", "")
        if not request.headers.get("x-api-key") and not (auth.startswith("Bearer ") and auth[7:].strip()):
            raise BadRequest("x-api-key header is required", 401)
        version = request.headers.get("anthropic-version")
        if not version:
            raise BadRequest("anthropic-version: header is required")
        if version not in VERSIONS:
            raise BadRequest(f"anthropic-version: invalid version {version!r}")
        if not isinstance(body, dict):
            raise BadRequest("There was an issue with your request body: not valid JSON")
        allowed = fields | (SAMPLING if version < "2026-10-21" and fields is MESSAGE_FIELDS else frozenset())
        betas = {b.strip() for b in request.headers.get("anthropic-beta", "").split(",")}
        allowed |= {name for name, beta in BETA_FIELDS.items() if beta in betas}
        for key in body:
            if key not in allowed:
                raise BadRequest(f"{key}: Extra inputs are not permitted")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise BadRequest("model: Field required")
        self._check_messages(body.get("messages"), body["model"])
        self._check_system(body.get("system"))
        self._check_tools(body)
        return body, rec

    @staticmethod
    def _check_system(system: Any) -> None:
        if system is None or isinstance(system, str):
            return
        if not isinstance(system, list) or any(
            not isinstance(b, dict) or b.get("type") != "text" for b in system
        ):
            raise BadRequest("system: Input should be a valid string or a list of text blocks")

    def _check_messages(self, messages: Any, model: str) -> None:
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: at least one message is required")
        turns: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role == "system" and model.startswith(SYSTEM_TURNS):
                self._check_system(m.get("content"))  # instructions from here on; not a turn
                if i == 0:
                    raise BadRequest(f"messages.{i}: a system message may not open the conversation")
                continue
            if role == "system":
                raise BadRequest(
                    f'messages.{i}.role: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            content = m.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list):
                raise BadRequest(f"messages.{i}.content: Input should be a valid string or list")
            for j, block in enumerate(blocks):
                self._check_block(block, role, f"messages.{i}.content.{j}")
            if turns and turns[-1]["role"] == role:  # consecutive turns are combined into one
                turns[-1]["blocks"] = turns[-1]["blocks"] + blocks
            else:
                turns.append({"role": role, "blocks": blocks, "at": i})
        for n, turn in enumerate(turns):
            empty = not turn["blocks"] or all(
                b.get("type") == "text" and not b.get("text") for b in turn["blocks"]
            )
            if empty and not (n == len(turns) - 1 and turn["role"] == "assistant"):
                raise BadRequest(
                    f"messages.{turn['at']}: all messages must have non-empty content except for the "
                    "optional final assistant message"
                )
            results = [b["tool_use_id"] for b in turn["blocks"] if b.get("type") == "tool_result"]
            prev = turns[n - 1] if n else None
            uses = [b["id"] for b in prev["blocks"] if b.get("type") == "tool_use"] if prev else []
            for tool_use_id in results:
                if tool_use_id not in uses:
                    raise BadRequest(
                        f"messages.{turn['at']}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block "
                        "in the previous message."
                    )
            if prev and uses and turn["role"] == "user":
                missing = [u for u in uses if u not in results]
                if missing:
                    raise BadRequest(
                        f"messages.{turn['at']}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                        "corresponding `tool_result` block in the next message."
                    )

    @staticmethod
    def _check_block(block: Any, role: str, where: str) -> None:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            raise BadRequest(
                f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags"
            )
        if kind == "text" and not isinstance(block.get("text"), str):
            raise BadRequest(f"{where}.text: Field required")
        if kind == "tool_result":
            if role != "user":
                raise BadRequest(f"{where}: tool_result blocks are only allowed in user messages")
            if not isinstance(block.get("tool_use_id"), str):
                raise BadRequest(f"{where}.tool_use_id: Field required")
        if kind == "tool_use":
            if role != "assistant":
                raise BadRequest(f"{where}: tool_use blocks are only allowed in assistant messages")
            if not isinstance(block.get("input"), dict) or not block.get("id") or not block.get("name"):
                raise BadRequest(f"{where}: tool_use blocks need id, name and an object input")
        if kind == "thinking" and not (isinstance(block.get("signature"), str) and "thinking" in block):
            raise BadRequest(f"{where}.signature: Field required")
        if kind == "image":
            source = block.get("source") or {}
            ok = (
                source.get("type") == "base64"
                and source.get("media_type") in IMAGE_TYPES
                and source.get("data")
            ) or (source.get("type") == "url" and source.get("url"))
            if not ok:
                raise BadRequest(f"{where}.source: invalid image source")
        if kind == "document":
            source = block.get("source") or {}
            if source.get("type") not in ("base64", "text", "url", "content", "file"):
                raise BadRequest(f"{where}.source: invalid document source")
            if source.get("type") == "base64" and source.get("media_type") != "application/pdf":
                raise BadRequest(f"{where}.source.media_type: Input should be 'application/pdf'")

    @staticmethod
    def _check_tools(body: dict[str, Any]) -> None:
        tools = body.get("tools")
        names: list[str] = []
        for k, tool in enumerate(tools or ()):
            if not isinstance(tool, dict) or not tool.get("name"):
                raise BadRequest(f"tools.{k}.name: Field required")
            if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
                raise BadRequest(f"tools.{k}.custom.input_schema: Field required")
            names.append(tool["name"])
        choice = body.get("tool_choice")
        if choice is None:
            return
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise BadRequest("tool_choice: Input tag does not match any of the expected tags")
        if choice["type"] != "none" and not tools:
            raise BadRequest("tool_choice may only be specified while providing tools")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise BadRequest(f"tool_choice.name: tool {choice.get('name')!r} not found in tools")

    @staticmethod
    def _check_params(body: dict[str, Any]) -> None:
        """The /v1/messages-only rules: max_tokens, sampling ranges, thinking, per-model limits."""
        model = body["model"]
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise BadRequest(
                "max_tokens: Field required" if max_tokens is None else "max_tokens: invalid value"
            )
        for name in ("temperature", "top_p"):
            value = body.get(name)
            if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
                raise BadRequest(f"{name}: Input should be less than or equal to 1")
        samplers = [name for name in SAMPLING if body.get(name) is not None]
        if samplers and model.startswith(NO_SAMPLING):
            raise BadRequest(f"`{samplers[0]}` is deprecated for this model.")
        if model.startswith(ONE_SAMPLER) and "temperature" in samplers and "top_p" in samplers:
            raise BadRequest(
                "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
            )
        stops = body.get("stop_sequences")
        if stops is not None and not (
            isinstance(stops, list) and all(isinstance(s, str) and s.strip() for s in stops)
        ):
            raise BadRequest("stop_sequences: each stop sequence must contain non-whitespace")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
            raise BadRequest("metadata: Extra inputs are not permitted")
        output_config = body.get("output_config") or {}
        if set(output_config) - {"effort", "format", "task_budget"}:
            raise BadRequest("output_config: Extra inputs are not permitted")
        fmt = output_config.get("format")
        if fmt is not None:
            if not (
                isinstance(fmt, dict)
                and fmt.get("type") == "json_schema"
                and isinstance(fmt.get("schema"), dict)
            ):
                raise BadRequest("output_config.format: expected {type: json_schema, schema}")
            if model.startswith(NO_STRUCTURED):
                raise BadRequest(f"'{model}' does not support output_config.format")
        if output_config.get("effort") not in (None, "low", "medium", "high", "xhigh", "max"):
            raise BadRequest(
                "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
            )
        thinking = body.get("thinking")
        if thinking is None:
            return
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if model.startswith(NO_SAMPLING):
                raise BadRequest(
                    '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" '
                    'and "output_config.effort" to control thinking behavior.'
                )
            if not isinstance(budget, int) or budget < 1024:
                raise BadRequest(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                )
            if budget >= max_tokens:
                raise BadRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
        elif kind == "adaptive":
            if model.startswith(NO_ADAPTIVE):
                raise BadRequest('"thinking.type.adaptive" is not supported for this model.')
        elif kind != "disabled":
            raise BadRequest("thinking: Input tag does not match any of the expected tags")
        if kind in ("enabled", "adaptive"):
            if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
                raise BadRequest("Thinking may not be enabled when tool_choice forces tool use.")
            if body.get("temperature") not in (None, 1):
                raise BadRequest("`temperature` may only be set to 1 when thinking is enabled.")
            if body.get("top_k") is not None:
                raise BadRequest("`top_k` is not supported when thinking is enabled.")
            if body.get("top_p") is not None and body["top_p"] < 0.95:
                raise BadRequest("`top_p` must be between 0.95 and 1 when thinking is enabled.")

    # --- handlers --------------------------------------------------------------------------------
    async def messages(self, request: web.Request) -> web.StreamResponse:
        try:
            body, rec = await self._checked(request, MESSAGE_FIELDS)
            self._check_params(body)
        except BadRequest as exc:
            return anthropic_error(exc.status, exc.message)
        return await self._answer(request, rec, body)

    async def _answer(self, request: web.Request, rec: Recorded, body: dict[str, Any]) -> web.StreamResponse:
        reply = self.next_reply(body["model"])
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return anthropic_error(reply.status, reply.error_message, retry_after=reply.retry_after)
        blocks = self.content(body, reply)
        if body.get("stream"):
            error = sse(
                "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            )
            return await write_sse(request, rec, self, self.stream_events(body, reply, blocks), reply, error)
        rec.completed = True
        message = self.message(body, reply, blocks)
        return web.Response(
            body=orjson.dumps(message), headers={"request-id": "req_fake01"}, content_type="application/json"
        )

    async def count_tokens(self, request: web.Request) -> web.Response:
        """https://platform.claude.com/docs/en/api/messages-count-tokens"""
        try:
            body, rec = await self._checked(request, COUNT_FIELDS)
        except BadRequest as exc:
            return anthropic_error(exc.status, exc.message)
        rec.completed = True
        size = len(orjson.dumps([body.get("system"), body["messages"], body.get("tools")]))
        return web.json_response({"input_tokens": max(1, size // 4)})

    # --- rendering -------------------------------------------------------------------------------
    @staticmethod
    def content(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        """The content blocks of the answer: thinking, then text or tool_use."""
        blocks: list[dict[str, Any]] = []
        if reply.reasoning:
            omitted = (body.get("thinking") or {}).get("display") == "omitted"
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": "" if omitted else reply.reasoning,
                    "signature": "fakesig-EqQBCkgIAR",
                }
            )
        forced = body.get("tool_choice") or {}
        if reply.tool_calls:
            for j, tc in enumerate(reply.tool_calls):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": tc.id or f"toolu_fake{j}",
                        "name": tc.name,
                        "input": tc.arguments,
                    }
                )
        elif forced.get("type") == "tool":
            # A forced tool is always called (the JSON-mode technique): the reply text is its input.
            try:
                data = orjson.loads(reply.text)
            except orjson.JSONDecodeError:
                data = None
            tool_input = data if isinstance(data, dict) else {"result": reply.text}
            blocks.append(
                {"type": "tool_use", "id": "toolu_fake0", "name": forced["name"], "input": tool_input}
            )
        else:
            blocks.append({"type": "text", "text": reply.text})
        return blocks

    @staticmethod
    def usage(reply: Reply, output: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": reply.input,
            "cache_creation_input_tokens": reply.cache_write,
            "cache_read_input_tokens": reply.cached,
            "output_tokens": output,
        }
        if reply.reasoning_tokens and output == reply.output:
            usage["output_tokens_details"] = {"thinking_tokens": reply.reasoning_tokens}
        return usage

    @staticmethod
    def stop_reason(reply: Reply, blocks: list[dict[str, Any]]) -> str:
        return reply.finish_reason or (
            "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        )

    def message(self, body: dict[str, Any], reply: Reply, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": "msg_fake01",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": self.stop_reason(reply, blocks),
            "stop_sequence": None,
            "usage": {**self.usage(reply, reply.output), "service_tier": "standard"},
        }

    def stream_events(self, body: dict[str, Any], reply: Reply, blocks: list[dict[str, Any]]) -> list[bytes]:
        """The documented sequence: message_start, ping, per block start/delta.../stop,
        message_delta (stop_reason, cumulative usage), message_stop."""
        start = {**self.message(body, reply, []), "stop_reason": None, "usage": self.usage(reply, 1)}
        events = [
            sse("message_start", {"type": "message_start", "message": start}),
            sse("ping", {"type": "ping"}),
        ]
        for i, block in enumerate(blocks):
            kind = block["type"]
            if kind == "thinking":
                first, deltas = (
                    {"type": "thinking", "thinking": "", "signature": ""},
                    [
                        {"type": "thinking_delta", "thinking": piece}
                        for piece in split_text(block["thinking"], 2)
                        if piece
                    ],
                )
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
            elif kind == "text":
                first = {"type": "text", "text": ""}
                deltas = [
                    {"type": "text_delta", "text": piece} for piece in split_text(block["text"], reply.chunks)
                ]
            else:
                first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                pieces = ["", *split_text(orjson.dumps(block["input"]).decode(), reply.chunks)]
                deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
            events.append(
                sse(
                    "content_block_start", {"type": "content_block_start", "index": i, "content_block": first}
                )
            )
            for delta in deltas:
                events.append(
                    sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
                )
            events.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        delta = {"stop_reason": self.stop_reason(reply, blocks), "stop_sequence": None}
        events.append(
            sse(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": self.usage(reply, reply.output)},
            )
        )
        events.append(sse("message_stop", {"type": "message_stop"}))
        return events
