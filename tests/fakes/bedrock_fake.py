"""A fake Amazon Bedrock runtime: Converse and ConverseStream as AWS documents them
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html).

  POST /model/{modelId}/converse          → JSON
  POST /model/{modelId}/converse-stream   → application/vnd.amazon.eventstream frames

Every request must be signed with SigV4 for service `bedrock` by a known access key: the fake
recomputes the signature with botocore's own signer over the headers the request says it signed,
and rejects a wrong signature, an `x-amz-*` header left unsigned, or no signature at all (403, as
AWS does). A Bedrock API key (`Authorization: Bearer`) is accepted instead when registered.
Unknown fields in the body are a ValidationException, like the service's. Stream frames are
written with valid prelude and message CRC32s (the gateway decodes them with botocore's parser).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import zlib
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import FakeServer, Recorded, Reply, split_text

ACCESS_KEY = "AKIDGATEWAYZTEST0001"
SECRET_KEY = "fake/secret+key/for/sigv4/tests0000000000"
SESSION_TOKEN = "FwoGZXIvYXdzEFAKESESSIONTOKEN"
PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")
TOP_FIELDS = frozenset(
    {
        "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
        "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
        "requestMetadata", "performanceConfig",
    }
)  # fmt: skip
BLOCKS = frozenset(
    {"text", "image", "document", "video", "toolUse", "toolResult", "guardrailContent", "cachePoint",
     "reasoningContent", "citationsContent"}
)  # fmt: skip
INFERENCE = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
EXCEPTIONS = {
    400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException",
    404: "ResourceNotFoundException", 408: "ModelTimeoutException", 424: "ModelErrorException",
    429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException",
}  # fmt: skip
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$"
)


class Invalid(Exception):
    pass


def aws_error(status: int, name: str, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return web.Response(
        status=status,
        body=orjson.dumps({"message": message}),
        headers=headers,
        content_type="application/json",
    )


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and headers length, CRC32), string headers
    (type 7), payload, message CRC32."""
    hb = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(hb) + len(payload) + 4, len(hb))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + hb + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(obj),
    )


def exception_frame(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, orjson.dumps({"message": message}))


class BedrockFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {ACCESS_KEY: SECRET_KEY}
        self.api_keys: set[str] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{tail:.*}", self.handle)]

    # --- checks ----------------------------------------------------------------------------------
    def verify(self, request: web.Request, raw: bytes) -> web.Response | None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.api_keys:
            return None
        m = _AUTH.match(auth)
        if m is None:
            return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        key, _day, region, service, signed, signature = m.groups()
        names = signed.split(";")
        if key not in self.secrets:
            return aws_error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        if service != "bedrock" or "host" not in names or "x-amz-date" not in names:
            return aws_error(
                403,
                "InvalidSignatureException",
                "Credential should be scoped to correct service and sign host and x-amz-date.",
            )
        unsigned = [
            h for h in (k.lower() for k in request.headers) if h.startswith("x-amz-") and h not in names
        ]
        if unsigned:
            return aws_error(403, "InvalidSignatureException", f"Header(s) {unsigned} must be signed.")
        token = request.headers.get("x-amz-security-token")
        creds = Credentials(key, self.secrets[key], token)
        url = f"http://{request.headers['host']}{request.raw_path}"
        req = AWSRequest(
            method=request.method, url=url, data=raw, headers={n: request.headers.get(n, "") for n in names}
        )
        req.context["timestamp"] = request.headers["x-amz-date"]
        signer = SigV4Auth(creds, "bedrock", region)
        expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        if expected != signature:
            return aws_error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            )
        return None

    @staticmethod
    def check(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Invalid("Malformed input request, please reformat your input and try again.")
        for key in body:
            if key not in TOP_FIELDS:
                raise Invalid(f"Malformed input request: extraneous key [{key}] is not permitted")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Invalid("A conversation must start with a user message.")
        for i, m in enumerate(messages):
            if set(m) - {"role", "content"} or m.get("role") not in ("user", "assistant"):
                raise Invalid(f"messages.{i}: role must be user or assistant, no other keys")
            if i and messages[i - 1]["role"] == m["role"]:
                raise Invalid("A conversation must alternate between user and assistant roles.")
            for block in m.get("content") or ():
                if len(block) != 1 or next(iter(block)) not in BLOCKS:
                    raise Invalid(
                        f"messages.{i}.content: a block has exactly one known member, got {sorted(block)}"
                    )
        for block in body.get("system") or ():
            if len(block) != 1 or next(iter(block)) not in ("text", "cachePoint", "guardrailContent"):
                raise Invalid(f"system: unknown block {sorted(block)}")
        extra = set(body.get("inferenceConfig") or {}) - INFERENCE
        if extra:
            raise Invalid(f"inferenceConfig: extraneous key {sorted(extra)} is not permitted")
        tools = body.get("toolConfig")
        if tools is not None:
            if set(tools) - {"tools", "toolChoice"} or not tools.get("tools"):
                raise Invalid("toolConfig: tools are required")
            for t in tools["tools"]:
                spec = t.get("toolSpec") or {}
                if set(t) != {"toolSpec"} or set(spec) - {"name", "description", "inputSchema"}:
                    raise Invalid(f"toolConfig.tools: unknown keys {sorted(spec)}")
                if "json" not in (spec.get("inputSchema") or {}):
                    raise Invalid("toolConfig.tools.inputSchema.json is required")
        return body

    # --- answers ---------------------------------------------------------------------------------
    @staticmethod
    def usage(reply: Reply) -> dict[str, Any]:
        usage = {
            "inputTokens": reply.input,
            "outputTokens": reply.output,
            "totalTokens": reply.input + reply.cached + reply.cache_write + reply.output,
        }
        if reply.cached:
            usage["cacheReadInputTokens"] = reply.cached
        if reply.cache_write:
            usage["cacheWriteInputTokens"] = reply.cache_write
        return usage

    @staticmethod
    def blocks(reply: Reply) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if reply.reasoning:
            out.append(
                {"reasoningContent": {"reasoningText": {"text": reply.reasoning, "signature": "sig-fake"}}}
            )
        for i, call in enumerate(reply.tool_calls):
            use = {"toolUseId": call.id or f"tooluse_fake{i}", "name": call.name, "input": call.arguments}
            out.append({"toolUse": use})
        if not reply.tool_calls:
            out.append({"text": reply.text})
        return out

    @staticmethod
    def stop_reason(reply: Reply) -> str:
        return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")

    def stream_events(self, reply: Reply) -> list[bytes]:
        events = [event("messageStart", {"role": "assistant"})]
        index = 0
        if reply.reasoning:
            delta = {"reasoningContent": {"text": reply.reasoning}}
            events.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
            sig = {"reasoningContent": {"signature": "sig-fake"}}
            events.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": sig}))
            events.append(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for i, call in enumerate(reply.tool_calls):
            start = {"toolUse": {"toolUseId": call.id or f"tooluse_fake{i}", "name": call.name}}
            events.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            for piece in split_text(orjson.dumps(call.arguments).decode(), 2):
                delta = {"toolUse": {"input": piece}}
                events.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
            events.append(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if not reply.tool_calls:
            for piece in split_text(reply.text, reply.chunks):
                events.append(
                    event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})
                )
            events.append(event("contentBlockStop", {"contentBlockIndex": index}))
        events.append(event("messageStop", {"stopReason": self.stop_reason(reply)}))
        if not reply.omit_usage:
            events.append(event("metadata", {"usage": self.usage(reply), "metrics": {"latencyMs": 12}}))
        return events

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        route = PATH.match(request.path)
        model = route["model"] if route else ""
        rec = self.record(request, {"model": model, **body} if isinstance(body, dict) else body, raw)
        if route is None:
            return aws_error(404, "UnknownOperationException", "Unknown operation")
        denied = self.verify(request, raw)
        if denied is not None:
            return denied
        try:
            self.check(body)
        except Invalid as exc:
            return aws_error(400, "ValidationException", str(exc))
        reply = self.next_reply(model)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            name = EXCEPTIONS.get(reply.status, "InternalServerException")
            return aws_error(reply.status, name, reply.error_message, reply.retry_after)
        if route["op"] == "converse-stream":
            return await self._stream(request, rec, reply)
        rec.completed = True
        answer = {
            "output": {"message": {"role": "assistant", "content": self.blocks(reply)}},
            "stopReason": self.stop_reason(reply),
            "usage": self.usage(reply),
            "metrics": {"latencyMs": 12},
        }
        if reply.omit_usage:
            del answer["usage"]
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _stream(self, request: web.Request, rec: Recorded, reply: Reply) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"content-type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        self.open_streams += 1
        try:
            for i, data in enumerate(self.stream_events(reply)):
                if reply.fail_after is not None and i >= reply.fail_after:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if reply.stream_error_after is not None and i >= reply.stream_error_after:
                    await resp.write(
                        exception_frame("throttlingException", "Too many requests, please wait.")
                    )
                    break
                if reply.chunk_delay and i:
                    await asyncio.sleep(reply.chunk_delay)
                await resp.write(data)
            with contextlib.suppress(ConnectionResetError):
                await resp.write_eof()
            rec.completed = True
        finally:
            self.open_streams -= 1
        return resp
