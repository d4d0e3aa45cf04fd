"""A fake Gemini upstream speaking `generateContent` and `streamGenerateContent?alt=sse` for both
Google AI Studio and Vertex AI (https://ai.google.dev/api/generate-content,
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference).

  POST /v1beta/models/{model}:generateContent|streamGenerateContent            (AI Studio)
  POST /v1/projects/{p}/locations/{r}/publishers/google/models/{model}:...     (Vertex AI)

aiohttp cannot route on a ':' inside a path segment, so one catch-all route parses the path.
Requests are checked the way Google's proto-JSON front end checks them: unknown fields at any
level, roles other than user/model, empty contents or parts, a part with no or two data fields,
bad base64, a nameless function response or conflicting config fields are a 400 INVALID_ARGUMENT
in Google's envelope (https://cloud.google.com/apis/design/errors#http_mapping). AI Studio wants a
key (`x-goog-api-key` or `?key=`): none is a 403, an invalid one a 400 API_KEY_INVALID
(https://ai.google.dev/gemini-api/docs/troubleshooting); Vertex wants `Authorization: Bearer`
(401 UNAUTHENTICATED). Field names are accepted in lowerCamel or snake_case, as proto JSON is.

Limits of the fake: only `alt=sse` streams (Google's default is a JSON array); thought parts are
only rendered when the request asked for them (`thinkingConfig.includeThoughts`), as Google does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import FakeServer, Reply, split_text, write_sse

STUDIO_PATH = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|batchEmbedContents)$"
)
VERTEX_PATH = re.compile(
    r"^/v1(?:beta1)?/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/google"
    r"/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)
VERTEX_PREFIX = "/v1/projects/fake-project/locations/us-central1/publishers/google"

# https://ai.google.dev/api/generate-content#request-body (+ Vertex: labels, modelArmorConfig)
REQUEST_FIELDS = frozenset(
    {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig", "cachedContent",
     "labels", "modelArmorConfig"}
)  # fmt: skip
# https://ai.google.dev/api/generate-content#generationconfig (+ Vertex: routingConfig, audioTimestamp, ...)
GENERATION_FIELDS = frozenset(
    {"candidateCount", "stopSequences", "maxOutputTokens", "temperature", "topP", "topK", "seed",
     "responseMimeType", "responseSchema", "responseJsonSchema", "_responseJsonSchema", "presencePenalty",
     "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "responseModalities",
     "speechConfig", "thinkingConfig", "imageConfig", "mediaResolution", "routingConfig", "audioTimestamp",
     "modelSelectionConfig"}
)  # fmt: skip
THINKING_FIELDS = frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"})
# https://ai.google.dev/api/caching#Part: `data` is a oneof; the rest are metadata.
PART_DATA = frozenset(
    {
        "text",
        "inlineData",
        "functionCall",
        "functionResponse",
        "fileData",
        "executableCode",
        "codeExecutionResult",
    }
)
PART_META = frozenset({"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"})
CONTENT_FIELDS = frozenset({"parts", "role"})
TOOL_FIELDS = frozenset(
    {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext", "fileSearch",
     "computerUse", "googleMaps", "retrieval", "enterpriseWebSearch"}
)  # fmt: skip
DECLARATION_FIELDS = frozenset(
    {
        "name",
        "description",
        "parameters",
        "parametersJsonSchema",
        "response",
        "responseJsonSchema",
        "behavior",
    }
)
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
CALLING_MODES = frozenset({"AUTO", "ANY", "NONE", "VALIDATED"})
THINKING_LEVELS = frozenset({"MINIMAL", "LOW", "MEDIUM", "HIGH"})

# https://cloud.google.com/apis/design/errors#handling_errors
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FAKE_SIGNATURE = base64.b64encode(b"fake thought signature").decode()
RESPONSE_ID = "fakeGeminiResp01"


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(obj, status=status, headers=headers, dumps=lambda o: orjson.dumps(o).decode())


def google_error(
    status: int, message: str, *, details: list[dict[str, Any]] | None = None, retry_after: int | None = None
) -> web.Response:
    """Google's envelope. A 429 says when to retry in a google.rpc.RetryInfo detail, not a header
    (https://ai.google.dev/gemini-api/docs/rate-limits)."""
    details = list(details or [])
    if retry_after is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"})
    err: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        err["details"] = details
    return _json({"error": err}, status)


class Invalid(Exception):
    """A 400 INVALID_ARGUMENT with Google's wording."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest) if rest and head else name


def _fields(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    """The object with proto field names normalised to lowerCamel; unknown names are a 400."""
    if not isinstance(obj, dict):
        raise Invalid(f"Invalid value at '{where}', expected an object.")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = _camel(key)
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise Invalid(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
        out[name] = value
    return out


def _base64(value: Any, where: str) -> None:
    # Proto JSON bytes accept standard and URL-safe base64, padded or not.
    text = value if isinstance(value, str) else ""
    try:
        base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{text[:20]}\""
        ) from None


def _enum(value: Any, allowed: frozenset[str], where: str) -> str:
    upper = value.upper() if isinstance(value, str) else ""
    if upper not in allowed:
        raise Invalid(f"Invalid value at '{where}' (TYPE_ENUM), \"{value}\"")
    return upper


def check_content(content: Any, where: str, *, system: bool = False) -> None:
    content = _fields(content, CONTENT_FIELDS, where)
    role = content.get("role", "")
    if not system and role not in ("", "user", "model"):
        raise Invalid("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n")
    for j, raw in enumerate(parts):
        at = f"{where}.parts[{j}]"
        part = _fields(raw, PART_DATA | PART_META, at)
        data = [k for k in part if k in PART_DATA]
        if len(data) > 1:
            raise Invalid(
                f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{data[1]}'"
            )
        if not data:
            raise Invalid(
                f"* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field\n"
            )
        if "thoughtSignature" in part:
            _base64(part["thoughtSignature"], f"{at}.thought_signature")
        if part.get("text") == "" and "thoughtSignature" not in part:
            # Vertex words it so; https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference#parts
            raise Invalid("Unable to submit request because it has an empty text parameter.")
        if "inlineData" in part:
            blob = _fields(
                part["inlineData"], frozenset({"mimeType", "data", "displayName"}), f"{at}.inline_data"
            )
            if not blob.get("mimeType"):
                raise Invalid(f"* GenerateContentRequest.{at}.inline_data.mime_type: mime_type is required\n")
            _base64(blob.get("data"), f"{at}.inline_data.data")
        if "fileData" in part:
            file = _fields(
                part["fileData"], frozenset({"mimeType", "fileUri", "displayName"}), f"{at}.file_data"
            )
            if not file.get("fileUri"):
                raise Invalid(f"* GenerateContentRequest.{at}.file_data.file_uri: file_uri is required\n")
        if "functionCall" in part:
            call = _fields(part["functionCall"], frozenset({"id", "name", "args"}), f"{at}.function_call")
            if not call.get("name"):
                raise Invalid(f"* GenerateContentRequest.{at}.function_call.name: Name cannot be empty.\n")
            if "args" in call and not isinstance(call["args"], dict):
                raise Invalid(
                    f"Invalid value at '{at}.function_call.args' (type.googleapis.com/google.protobuf.Struct)"
                )
        if "functionResponse" in part:
            fr = _fields(
                part["functionResponse"],
                frozenset({"id", "name", "response", "parts", "willContinue", "scheduling"}),
                f"{at}.function_response",
            )
            if not fr.get("name"):
                raise Invalid(
                    f"* GenerateContentRequest.{at}.function_response.name: Name cannot be empty.\n"
                )
            if not isinstance(fr.get("response"), dict):
                raise Invalid(
                    f"Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct)"
                )


def check_request(body: Any) -> dict[str, Any]:
    """The request with camelCase top-level names; raises Invalid as Google would."""
    if not isinstance(body, dict):
        raise Invalid("Invalid JSON payload received. Unexpected token.")
    req = _fields(body, REQUEST_FIELDS, "")
    contents = req.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        check_content(content, f"contents[{i}]")
    if "systemInstruction" in req:
        check_content(req["systemInstruction"], "system_instruction", system=True)
    for i, tool in enumerate(req.get("tools") or []):
        tool = _fields(tool, TOOL_FIELDS, f"tools[{i}]")
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            at = f"tools[{i}].function_declarations[{j}]"
            decl = _fields(decl, DECLARATION_FIELDS, at)
            if not FUNCTION_NAME.match(str(decl.get("name", ""))):
                raise Invalid(f"* GenerateContentRequest.{at}.name: Invalid function name.\n")
            if "parameters" in decl and "parametersJsonSchema" in decl:
                raise Invalid(
                    f"* GenerateContentRequest.{at}: parameters and parameters_json_schema are mutually exclusive\n"
                )
    if "toolConfig" in req:
        config = _fields(
            req["toolConfig"], frozenset({"functionCallingConfig", "retrievalConfig"}), "tool_config"
        )
        calling = _fields(
            config.get("functionCallingConfig", {}),
            frozenset({"mode", "allowedFunctionNames"}),
            "tool_config.function_calling_config",
        )
        if "mode" in calling:
            _enum(calling["mode"], CALLING_MODES, "tool_config.function_calling_config.mode")
    gen = _fields(req.get("generationConfig", {}), GENERATION_FIELDS, "generation_config")
    if "thinkingConfig" in gen:
        thinking = _fields(gen["thinkingConfig"], THINKING_FIELDS, "generation_config.thinking_config")
        if "thinkingLevel" in thinking and "thinkingBudget" in thinking:
            raise Invalid("You can only set only one of thinking budget and thinking level.")
        if "thinkingLevel" in thinking:
            _enum(
                thinking["thinkingLevel"], THINKING_LEVELS, "generation_config.thinking_config.thinking_level"
            )
    if "responseJsonSchema" in gen and "responseSchema" in gen:
        raise Invalid(
            "* GenerateContentRequest.generation_config: response_schema and response_json_schema are mutually exclusive\n"
        )
    if ("responseJsonSchema" in gen or "responseSchema" in gen) and gen.get(
        "responseMimeType"
    ) != "application/json":
        raise Invalid(
            "* GenerateContentRequest.generation_config.response_mime_type: must be application/json when a response schema is set\n"
        )
    count = gen.get("candidateCount", 1)
    if not isinstance(count, int) or not 1 <= count <= 8:
        raise Invalid("* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8\n")
    if len(gen.get("stopSequences") or []) > 5:
        raise Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences\n")
    if "logprobs" in gen and not gen.get("responseLogprobs"):
        raise Invalid(
            "* GenerateContentRequest.generation_config.logprobs: only valid with response_logprobs\n"
        )
    req["generationConfig"] = gen
    return req


class GeminiFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.invalid_keys: set[str] = {"invalid-key"}  # AI Studio keys answered with API_KEY_INVALID
        # Vertex: when set, a bearer token must pass it (minted by the token endpoint's fake).
        self.token_check: Callable[[str], bool] | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1beta/models", self.models), web.post("/{tail:.*}", self.handle)]

    async def models(self, request: web.Request) -> web.Response:
        from tests.fakes.model_lists import gemini_models

        self.record(request, None)
        if "models" not in self.listings:
            return google_error(404, f"The requested URL {request.path} was not found on this server.")
        return gemini_models(request, self.listings["models"], self.page_cap)

    def base_for(self, provider: str) -> str:
        """The provider-table base URL pointing here ("google" or "google-vertex")."""
        return self.url + (VERTEX_PREFIX if provider == "google-vertex" else "/v1beta")

    def vendor_bodies(self, model: str) -> list[dict[str, Any]]:
        """The bodies as sent for `model`, without the "model" key added for `bodies_for`."""
        return [{k: v for k, v in b.items() if k != "model"} for b in self.bodies_for(model)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        route = STUDIO_PATH.match(request.path) or VERTEX_PATH.match(request.path)
        model = route["model"] if route else ""
        rec = self.record(request, {"model": model, **body} if isinstance(body, dict) else body)
        if route is None:
            return google_error(404, f"The requested URL {request.path} was not found on this server.")
        vertex = "project" in route.groupdict()
        denied = self._auth(request, vertex)
        if denied is not None:
            return denied
        if route["method"] == "batchEmbedContents":
            from tests.fakes.embeddings_fake import gemini_batch_embed

            return await gemini_batch_embed(self, request, model, body)
        stream = route["method"] == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            return google_error(400, "fake: only alt=sse streams are implemented")
        try:
            req = check_request(body)
        except Invalid as exc:
            violation = {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"description": str(exc)}],
            }
            return google_error(400, str(exc), details=[violation])
        reply = self.next_reply(model)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return google_error(reply.status, reply.error_message, retry_after=reply.retry_after)
        gen = req["generationConfig"]
        n = reply.choices or int(gen.get("candidateCount") or 1)
        thoughts = bool((gen.get("thinkingConfig") or {}).get("includeThoughts"))
        logprobs = reply.logprobs or bool(gen.get("responseLogprobs"))
        extra = {"createTime": "2025-01-01T00:00:00.000000Z"} if vertex else {}
        if stream:
            events = self.stream_events(model, reply, n, thoughts, logprobs, extra)
            error = self._event(
                {"error": {"code": 500, "message": "fake mid-stream failure", "status": "INTERNAL"}}
            )
            return await write_sse(request, rec, self, events, reply, error)
        rec.completed = True
        return _json(self.generate(model, reply, n, thoughts, logprobs, extra))

    def _auth(self, request: web.Request, vertex: bool) -> web.Response | None:
        bearer = request.headers.get("authorization", "")
        if vertex:
            if (
                not bearer.startswith("Bearer ")
                or len(bearer) <= 7
                or (self.token_check is not None and not self.token_check(bearer[7:]))
            ):
                return google_error(
                    401,
                    "Request is missing required authentication credential. Expected OAuth 2 access token, "
                    "login cookie or other valid authentication credential.",
                )
            return None
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key and not bearer.startswith("Bearer "):
            return google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if key in self.invalid_keys:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            return google_error(400, "API key not valid. Please pass a valid API key.", details=[info])
        return None

    # --- rendering -----------------------------------------------------------------------------
    @staticmethod
    def usage(reply: Reply, final: bool = True) -> dict[str, Any]:
        """promptTokenCount includes cached tokens; thoughtsTokenCount is apart from candidatesTokenCount."""
        prompt = reply.input + reply.cached
        out: dict[str, Any] = {"promptTokenCount": prompt}
        candidates = reply.output - reply.reasoning_tokens if final else 0
        thoughts = reply.reasoning_tokens if final else 0
        if candidates:
            out["candidatesTokenCount"] = candidates
        out["totalTokenCount"] = prompt + candidates + thoughts
        if reply.cached:
            out["cachedContentTokenCount"] = reply.cached
        out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        if thoughts:
            out["thoughtsTokenCount"] = thoughts
        return out

    @staticmethod
    def _calls(reply: Reply, signed: bool) -> list[dict[str, Any]]:
        parts = []
        for j, tc in enumerate(reply.tool_calls):
            call: dict[str, Any] = {"name": tc.name, "args": tc.arguments}
            if tc.id:
                call["id"] = tc.id
            part: dict[str, Any] = {"functionCall": call}
            if signed and j == 0:
                part["thoughtSignature"] = FAKE_SIGNATURE  # on the first call of a thinking turn
            parts.append(part)
        return parts

    @staticmethod
    def _logprobs(text: str) -> dict[str, Any]:
        token = text.split(" ", 1)[0] or text
        chosen = {"token": token, "logProbability": -0.01}
        return {
            "topCandidates": [{"candidates": [chosen, {"token": "Hi", "logProbability": -4.6}]}],
            "chosenCandidates": [chosen],
        }

    def _text(self, reply: Reply, n: int, i: int) -> str:
        return reply.text if n == 1 else f"{reply.text} [{i}]"

    def generate(
        self, model: str, reply: Reply, n: int, thoughts: bool, logprobs: bool, extra: dict[str, Any]
    ) -> dict[str, Any]:
        candidates = []
        for i in range(n):
            parts: list[dict[str, Any]] = []
            if thoughts and reply.reasoning:
                parts.append({"text": reply.reasoning, "thought": True})
            if reply.tool_calls:
                parts.extend(self._calls(reply, bool(reply.reasoning)))
            else:
                parts.append({"text": self._text(reply, n, i)})
            cand: dict[str, Any] = {
                "content": {"parts": parts, "role": "model"},
                "finishReason": reply.finish_reason or "STOP",
                "index": i,
            }
            if logprobs:
                cand["avgLogprobs"] = -0.01
                cand["logprobsResult"] = self._logprobs(self._text(reply, n, i))
            candidates.append(cand)
        out: dict[str, Any] = {"candidates": candidates}
        if not reply.omit_usage:
            out["usageMetadata"] = self.usage(reply)
        return {**out, "modelVersion": model, **extra, "responseId": RESPONSE_ID}

    @staticmethod
    def _event(obj: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"  # Google frames its SSE with CRLF

    def stream_events(
        self, model: str, reply: Reply, n: int, thoughts: bool, logprobs: bool, extra: dict[str, Any]
    ) -> list[bytes]:
        """One candidate after the other; the finishReason rides on each candidate's last event and
        every event carries the usage so far (the last one the totals)."""
        pending: list[dict[str, Any]] = []
        for i in range(n):
            steps: list[list[dict[str, Any]]] = []
            if thoughts and reply.reasoning:
                steps += [[{"text": piece, "thought": True}] for piece in split_text(reply.reasoning, 2)]
            if reply.tool_calls:
                steps.append(self._calls(reply, bool(reply.reasoning)))
            else:
                steps += [[{"text": piece}] for piece in split_text(self._text(reply, n, i), reply.chunks)]
            for k, parts in enumerate(steps):
                cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": i}
                if k == len(steps) - 1:
                    cand["finishReason"] = reply.finish_reason or "STOP"
                if logprobs and "text" in parts[0] and not parts[0].get("thought"):
                    cand["logprobsResult"] = self._logprobs(parts[0]["text"])
                pending.append({"candidates": [cand]})
        events = []
        for k, event in enumerate(pending):
            if not reply.omit_usage:
                event["usageMetadata"] = self.usage(reply, final=k == len(pending) - 1)
            events.append(self._event({**event, "modelVersion": model, **extra, "responseId": RESPONSE_ID}))
        return events
