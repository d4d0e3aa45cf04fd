"""openai_to_gemini: OpenAI chat completions ⇄ Gemini `generateContent` (Google AI Studio and
Vertex AI share the wire format; only the base URL and the auth differ, and both come from the
provider table).

Request: https://ai.google.dev/api/generate-content#request-body and
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference. System and
developer messages become `systemInstruction`; assistant turns are role `model`; tool results are
`functionResponse` parts in a `user` turn; consecutive turns of one role are merged (Gemini wants
user/model turns). Tool parameters go out as `parametersJsonSchema` and json_schema formats as
`responseJsonSchema`: both take plain JSON Schema, so the caller's schema is sent as written
instead of being cut down to the OpenAPI subset `parameters` / `responseSchema` accept
(https://ai.google.dev/api/caching#FunctionDeclaration, https://ai.google.dev/api/generate-content#FIELDS.response_json_schema).
What Gemini cannot take is left out and named through `drop`.

Response and stream: https://ai.google.dev/api/generate-content#generatecontentresponse. A stream
(`:streamGenerateContent?alt=sse`) is a series of whole GenerateContentResponse objects carrying
the new parts; there is no end marker, so the stream counts as finished once every candidate
reported a `finishReason`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import orjson

from shared.dialects.base import ChatTranslator, Usage
from shared.errors import InvalidRequest
from shared.transport.errors import UpstreamError, retry_after_seconds

# OpenAI field → generationConfig field, copied unchanged.
# https://ai.google.dev/api/generate-content#generationconfig
_GENERATION: dict[str, str] = {
    "n": "candidateCount",
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",  # not OpenAI's, but callers (and the /v1/messages route) send it
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
# Everything else in the OpenAI body is named as dropped (logit_bias, user, metadata, ...).
_HANDLED = frozenset((
    "model", "messages", "stream", "tools", "tool_choice", "max_tokens", "max_completion_tokens",
    "stop", "logprobs", "top_logprobs", "response_format", "reasoning_effort", *_GENERATION,
))  # fmt: skip

# https://ai.google.dev/api/generate-content#FinishReason (anything else: stop)
_FINISH: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys((
        "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
    ), "content_filter"),
}  # fmt: skip

# https://ai.google.dev/api/caching#Mode
_TOOL_MODES: dict[str, str] = {"auto": "AUTO", "none": "NONE", "required": "ANY"}

# reasoning_effort → thinkingConfig, as Google's own OpenAI layer maps it
# (https://ai.google.dev/gemini-api/docs/openai#thinking). Gemini 2.5 takes a token budget;
# Gemini 3 and later take a level, and each family accepts only some levels
# (https://ai.google.dev/gemini-api/docs/thinking#thinking-levels): 3 Pro knows LOW and HIGH,
# later Pros LOW, MEDIUM and HIGH, Flash models MINIMAL to HIGH. Sending both fields is a 400.
_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
_PRO_25_MIN_BUDGET = 128  # 2.5 Pro cannot switch thinking off; 128 is its smallest budget
_LEVELS_FLASH = {
    "none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "HIGH",
}  # fmt: skip
_LEVELS_PRO = {**_LEVELS_FLASH, "none": "LOW", "minimal": "LOW"}
_LEVELS_PRO_3_0 = {**_LEVELS_PRO, "medium": "HIGH"}
# (pattern on the native id, level table), first match wins; a Gemini ≥ 3 id matching none is Flash.
_LEVEL_FAMILIES: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"gemini-3-pro"), _LEVELS_PRO_3_0),
    (re.compile(r"-pro\b"), _LEVELS_PRO),
)
_VERSION = re.compile(r"gemini-(\d+(?:\.\d+)?)")

# Gemini 3 rejects a function-call turn without its thought signature; history written by another
# model has none, and Google documents this placeholder for that case
# (https://ai.google.dev/gemini-api/docs/thought-signatures#faqs).
_SKIP_SIGNATURE = "skip_thought_signature_validator"

# Media types by file extension, for URLs passed as fileData (Vertex requires a mimeType).
# https://ai.google.dev/gemini-api/docs/image-understanding#supported-formats,
# .../audio#supported-formats, .../document-processing
_EXT_MIME = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf", "txt": "text/plain",
    "wav": "audio/wav", "mp3": "audio/mp3", "aiff": "audio/aiff", "aac": "audio/aac",
    "ogg": "audio/ogg", "flac": "audio/flac", "mp4": "video/mp4", "webm": "video/webm",
}  # fmt: skip
_AUDIO_MIME: dict[str, str] = {"wav": "audio/wav", "mp3": "audio/mp3"}

# Upstream answers that are the provider account's problem, not the caller's, although Google sends
# them as 400: an invalid key, or a project without billing / in an unsupported region
# (https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes). They become 401/403 so that
# failover tries the next offer.
_REASON_STATUS: dict[str, int] = {"API_KEY_INVALID": 401, "API_KEY_EXPIRED": 401}
_VENDOR_400_STATUS: dict[str, int] = {"FAILED_PRECONDITION": 403}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")  # google.protobuf.Duration in JSON: "38s", "0.5s"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def gemini_usage(raw: Mapping[str, Any] | None) -> Usage:
    """https://ai.google.dev/api/generate-content#UsageMetadata: `promptTokenCount` includes the
    cached tokens; `thoughtsTokenCount` is *not* part of `candidatesTokenCount`, so each is counted
    once. `toolUsePromptTokenCount` (built-in tools only) is billed as input."""
    if not raw:
        return Usage()
    prompt = _int(raw.get("promptTokenCount"))
    cached = min(_int(raw.get("cachedContentTokenCount")), prompt)
    thoughts = _int(raw.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=prompt - cached + _int(raw.get("toolUsePromptTokenCount")),
        cache_read_tokens=cached,
        output_tokens=_int(raw.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
    )


def _version(native_id: str) -> float:
    found = _VERSION.search(native_id)
    return float(found.group(1)) if found else 0.0


def thinking_config(native_id: str, effort: str) -> dict[str, Any] | None:
    """The thinkingConfig for a reasoning effort, or None for a model that cannot think (< 2.5)."""
    version = _version(native_id)
    if version < 2.5:
        return None
    include = effort != "none"
    if version >= 3:
        table = next((t for pattern, t in _LEVEL_FAMILIES if pattern.search(native_id)), _LEVELS_FLASH)
        return {"thinkingLevel": table.get(effort, "HIGH"), "includeThoughts": include}
    budget = _BUDGETS.get(effort, _BUDGETS["medium"])
    if budget == 0 and "-pro" in native_id:
        budget = _PRO_25_MIN_BUDGET
    return {"thinkingBudget": budget, "includeThoughts": include}


def _new_id(prefix: str = "chatcmpl-") -> str:
    return prefix + uuid.uuid4().hex[:24]


def _finish(reason: str | None, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"  # Gemini ends a function-call turn with STOP
    return _FINISH.get(reason or "STOP", "stop")


def _logprob(c: Mapping[str, Any]) -> dict[str, Any]:
    token = str(c.get("token", ""))
    return {"token": token, "logprob": float(c.get("logProbability", 0.0)), "bytes": list(token.encode())}


def _logprobs(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """https://ai.google.dev/api/generate-content#LogprobsResult → OpenAI `logprobs.content`."""
    if not result:
        return None
    tops = result.get("topCandidates") or []
    content = []
    for k, chosen in enumerate(result.get("chosenCandidates") or []):
        top = (tops[k].get("candidates") or []) if k < len(tops) else []
        content.append({**_logprob(chosen), "top_logprobs": [_logprob(t) for t in top]})
    return {"content": content, "refusal": None}


def _tool_call(part: Mapping[str, Any]) -> dict[str, Any]:
    fc = part["functionCall"]
    call: dict[str, Any] = {
        "id": fc.get("id") or _new_id("call_"),
        "type": "function",
        "function": {"name": fc.get("name", ""), "arguments": orjson.dumps(fc.get("args") or {}).decode()},
    }
    if part.get("thoughtSignature"):
        # Where Google's own OpenAI layer carries it (https://ai.google.dev/gemini-api/docs/thought-signatures#openai).
        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return call


def _arguments(raw: Any, param: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw) if isinstance(raw, str | bytes) else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object", param=param)
    return value


def _function_output(content: Any) -> dict[str, Any]:
    """FunctionResponse.response must be an object; anything else goes under "output", the key the
    API documents for a function's result (https://ai.google.dev/api/caching#FunctionResponse)."""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = content if isinstance(content, str) else ""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    return value if isinstance(value, dict) else {"output": value}


def _signature_of(call: Mapping[str, Any]) -> Any:
    """The thought signature a caller handed back on a tool call (`extra_content.google`, Google's
    extension of the OpenAI shape); anything shaped otherwise is no signature."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    return google.get("thought_signature") if isinstance(google, dict) else None


def _data_url(url: str, param: str) -> tuple[str, str]:
    header, sep, data = url.partition(",")
    fields = header[5:].split(";")
    if not sep or "base64" not in fields[1:] or not fields[0]:
        raise InvalidRequest(f"'{param}' must be a base64 data URL", param=param)
    return fields[0], data


def _mime_of(url: str, default: str) -> str:
    ext = urlparse(url).path.rsplit(".", 1)[-1].lower()
    return _EXT_MIME.get(ext, default)


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return  # Gemini rejects a turn without parts
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _error_object(body: bytes) -> dict[str, Any]:
    """The `error` of Google's envelope; Vertex streams wrap it in a one-element array."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        return {"message": err}
    return err if isinstance(err, dict) else {}


class OpenAIToGemini(ChatTranslator):
    dialect = "gemini"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gemini3 = _version(self.native_id) >= 3
        self._n = 1  # candidates requested, to know when a stream is over
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._tool_counts: dict[int, int] = {}
        self._blocked = False

    def path(self, stream: bool) -> str:
        if stream:
            return f"/models/{self.native_id}:streamGenerateContent?alt=sse"
        return f"/models/{self.native_id}:generateContent"

    # --- request ---------------------------------------------------------------------------------
    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        system, contents = self._contents(body.get("messages") or [])
        out: dict[str, Any] = {"contents": contents}
        if system:
            out["systemInstruction"] = {"parts": system}
        tools = body.get("tools")
        choice = body.get("tool_choice")
        if tools:
            out["tools"] = [{"functionDeclarations": [self._declaration(t["function"]) for t in tools]}]
            if choice is not None:
                out["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
        elif choice not in (None, "none", "auto"):
            self.drop("tool_choice")  # nothing to choose among
        generation = self._generation(body)
        if generation:
            out["generationConfig"] = generation
        self._n = int(body.get("n") or 1)
        for name in body:
            if name not in _HANDLED:
                self.drop(name)
        return out

    def _generation(self, body: dict[str, Any]) -> dict[str, Any]:
        gen = {dst: body[src] for src, dst in _GENERATION.items() if body.get(src) is not None}
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        if limit is not None:
            gen["maxOutputTokens"] = limit
        stop = body.get("stop")
        if stop:
            gen["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        if body.get("logprobs"):
            gen["responseLogprobs"] = True
            if body.get("top_logprobs") is not None:
                gen["logprobs"] = body["top_logprobs"]
        elif body.get("top_logprobs") is not None:
            self.drop("top_logprobs")  # meaningless without logprobs
        fmt = body.get("response_format") or {}
        if fmt.get("type") in ("json_object", "json_schema"):
            gen["responseMimeType"] = "application/json"
            schema = (fmt.get("json_schema") or {}).get("schema")
            if fmt["type"] == "json_schema" and schema is not None:
                gen["responseJsonSchema"] = schema
        effort = body.get("reasoning_effort")
        if effort:
            config = thinking_config(self.native_id, effort)
            if config is None:
                self.drop("reasoning_effort")
            else:
                gen["thinkingConfig"] = config
        return gen

    def _declaration(self, fn: dict[str, Any]) -> dict[str, Any]:
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters"):
            decl["parametersJsonSchema"] = fn["parameters"]
        if fn.get("strict"):
            self.drop("strict")  # Gemini has no per-function strict mode
        return decl

    def _contents(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        names: dict[str, str] = {}  # tool_call_id → function name, for functionResponse parts
        for i, msg in enumerate(messages):
            role, where = msg.get("role"), f"messages[{i}]"
            content = msg.get("content")
            if role in ("system", "developer"):
                parts = self._parts(content, where)
                if any("text" not in p for p in parts):
                    # https://ai.google.dev/api/generate-content#FIELDS.system_instruction: text only
                    raise InvalidRequest(f"'{where}.content' may only hold text", param=f"{where}.content")
                system.extend(parts)
            elif role == "user":
                _append(contents, "user", self._parts(content, where))
            elif role == "assistant":
                parts = self._parts(content, where)
                parts.extend(self._calls(msg.get("tool_calls") or [], names, where))
                _append(contents, "model", parts)
            else:  # tool, or the legacy function role
                name = names.get(msg.get("tool_call_id") or "") or msg.get("name")
                if not name:
                    param = f"{where}.tool_call_id"
                    raise InvalidRequest(f"'{param}' matches no earlier assistant tool call", param=param)
                response = {"name": name, "response": _function_output(content)}
                _append(contents, "user", [{"functionResponse": response}])
        return system, contents

    def _calls(self, calls: list[dict[str, Any]], names: dict[str, str], where: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for j, call in enumerate(calls):
            fn = call.get("function") or {}
            args = _arguments(fn.get("arguments"), f"{where}.tool_calls[{j}].function.arguments")
            part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
            signature = _signature_of(call)
            if isinstance(signature, str) and signature:
                part["thoughtSignature"] = signature
            names[call["id"]] = fn["name"]
            parts.append(part)
        if parts and self._gemini3 and "thoughtSignature" not in parts[0]:
            parts[0]["thoughtSignature"] = _SKIP_SIGNATURE
        return parts

    def _parts(self, content: Any, where: str) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"text": content}] if content else []  # Gemini rejects empty text parts
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(content):
            kind, param = part.get("type"), f"{where}.content[{j}]"
            if kind in ("text", "refusal"):
                if part.get(kind):
                    parts.append({"text": part[kind]})
            elif kind == "image_url":
                parts.append(self._image(part.get("image_url"), f"{param}.image_url"))
            elif kind == "input_audio":
                audio = part.get("input_audio") or {}
                mime = _AUDIO_MIME.get(audio.get("format", ""))
                if mime is None or not audio.get("data"):
                    raise InvalidRequest(
                        f"'{param}.input_audio' needs data and a format of wav or mp3", param=param
                    )
                parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
            elif kind == "file":
                parts.append(self._file(part.get("file") or {}, f"{param}.file"))
        return parts

    def _image(self, image: Any, param: str) -> dict[str, Any]:
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"'{param}.url' is required", param=f"{param}.url")
        if isinstance(image, dict) and image.get("detail") not in (None, "auto"):
            self.drop("detail")
        if url.startswith("data:"):
            mime, data = _data_url(url, f"{param}.url")
            return {"inlineData": {"mimeType": mime, "data": data}}
        # https://ai.google.dev/gemini-api/docs/file-input-methods: public URLs and gs:// as fileData
        return {"fileData": {"mimeType": _mime_of(url, "image/jpeg"), "fileUri": url}}

    def _file(self, file: dict[str, Any], param: str) -> dict[str, Any]:
        data = file.get("file_data")
        if not isinstance(data, str) or not data:
            raise InvalidRequest(f"'{param}.file_data' is required (file ids are not supported)", param=param)
        if data.startswith("data:"):
            mime, data = _data_url(data, f"{param}.file_data")
        else:
            mime = _mime_of(str(file.get("filename") or ""), "application/pdf")
        return {"inlineData": {"mimeType": mime, "data": data}}

    # --- response --------------------------------------------------------------------------------
    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        self.response_id = str(data.get("responseId") or "") or _new_id()
        choices = [self._choice(c, pos) for pos, c in enumerate(data.get("candidates") or [])]
        if not choices:
            # A blocked prompt gets no candidates (https://ai.google.dev/api/generate-content#PromptFeedback).
            blocked = bool((data.get("promptFeedback") or {}).get("blockReason"))
            message = {"role": "assistant", "content": None, "refusal": None}
            finish = "content_filter" if blocked else "stop"
            choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]
        self.usage = gemini_usage(data.get("usageMetadata"))
        return {
            "id": self.response_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model_id,
            "system_fingerprint": None,
            "choices": choices,
            "usage": self.usage.openai(),
        }

    def _choice(self, cand: dict[str, Any], pos: int) -> dict[str, Any]:
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in (cand.get("content") or {}).get("parts") or []:
            if "functionCall" in part:
                calls.append(_tool_call(part))
            elif isinstance(part.get("text"), str):
                (reasoning if part.get("thought") else text).append(part["text"])
        content = "".join(text) if text or not calls else None
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        return {
            "index": cand.get("index", pos),
            "message": message,
            "logprobs": _logprobs(cand.get("logprobsResult")),
            "finish_reason": _finish(cand.get("finishReason"), bool(calls)),
        }

    # --- stream ----------------------------------------------------------------------------------
    def stream_event(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        obj = self.event_object(data)
        if obj is None:
            return []
        if "error" in obj:
            err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
            code = err.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 502
            message = str(err.get("message") or "upstream stream error")
            raise UpstreamError(status, message, kind="stream", vendor_type=err.get("status"))
        if not self.response_id:
            self.response_id = str(obj.get("responseId") or "") or _new_id()
        if obj.get("usageMetadata"):
            self.usage = gemini_usage(obj["usageMetadata"])  # cumulative: the latest one counts
        chunks: list[dict[str, Any]] = []
        candidates = obj.get("candidates") or []
        if not candidates and (obj.get("promptFeedback") or {}).get("blockReason"):
            self._blocked = True
            chunks.append(self._delta(0, {}, "content_filter"))
        for pos, cand in enumerate(candidates):
            index = cand.get("index", pos)
            logprobs = _logprobs(cand.get("logprobsResult"))
            for part in (cand.get("content") or {}).get("parts") or []:
                if "functionCall" in part:
                    k = self._tool_counts.get(index, 0)
                    self._tool_counts[index] = k + 1
                    delta: dict[str, Any] = {"tool_calls": [{"index": k, **_tool_call(part)}]}
                elif isinstance(part.get("text"), str) and part["text"]:
                    delta = {"reasoning_content" if part.get("thought") else "content": part["text"]}
                else:
                    continue
                chunks.append(self._delta(index, delta, None, logprobs))
                logprobs = None
            if cand.get("finishReason"):
                chunks.append(
                    self._delta(index, {}, _finish(cand["finishReason"], index in self._tool_counts))
                )
                self._finished.add(index)
        return chunks

    def _delta(
        self, index: int, delta: dict[str, Any], finish: str | None, logprobs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if index not in self._started:
            self._started.add(index)
            delta = {"role": "assistant", **delta}
        extra = {"logprobs": logprobs} if logprobs else {}
        return self.chunk(delta, index, finish, **extra)

    @property
    def stream_done(self) -> bool:
        """Gemini sends no end marker: done once every requested candidate has finished."""
        return self._blocked or len(self._finished) >= self._n

    # --- errors ----------------------------------------------------------------------------------
    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        """Google's envelope: {"error": {"code", "message", "status", "details": [...]}}
        (https://ai.google.dev/gemini-api/docs/troubleshooting, https://cloud.google.com/apis/design/errors)."""
        err = _error_object(body)
        message, vendor = err.get("message"), err.get("status")
        details = err.get("details") if isinstance(err.get("details"), list) else []
        reason = _detail(details, "reason")  # google.rpc.ErrorInfo
        retry = retry_after_seconds(headers)
        if retry is None:  # google.rpc.RetryInfo: a protobuf Duration such as "38s"
            found = _DURATION.match(str(_detail(details, "retryDelay") or ""))
            retry = float(found.group(1)) if found else None
        if status == 400:
            status = _REASON_STATUS.get(str(reason), 0) or _VENDOR_400_STATUS.get(str(vendor), 400)
        message = message if isinstance(message, str) and message else f"upstream returned HTTP {status}"
        vendor_type = vendor if isinstance(vendor, str) else None
        return UpstreamError(status, message[:2000], retry_after=retry, vendor_type=vendor_type)


def _detail(details: Any, key: str) -> Any:
    return next((d[key] for d in details if isinstance(d, dict) and d.get(key)), None)


def _calling_config(choice: Any) -> dict[str, Any]:
    """https://ai.google.dev/api/caching#FunctionCallingConfig"""
    if isinstance(choice, dict):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    return {"mode": _TOOL_MODES.get(choice, "AUTO")}
