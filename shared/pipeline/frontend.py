"""What a front end (the API a caller speaks) gives the pipeline and gets back from it.

A front end turns the caller's request into an `Inbound` (the pivot, OpenAI chat, plus the
caller's own body for offers that speak the caller's API), and renders what comes back: a whole
answer (`response`) or a stream (`writer`), in the caller's shape. The pipeline itself is the same
for every front end: authenticate → limit → reserve → route → call with failover → settle →
record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from shared.dialects.base import ChatTranslator, Usage
from shared.errors import GatewayError
from shared.pipeline.request import GATEWAY_FIELDS, ChatParams, check_chat

if TYPE_CHECKING:
    from shared.pipeline.call import Call


@dataclass(slots=True)
class Inbound:
    body: Any  # the request in the pivot (OpenAI chat), validated by the pipeline
    native: dict[str, Any] | None = None  # the caller's own body, for offers of its API
    headers: dict[str, str] = field(default_factory=dict)  # caller headers sent with `native`
    dropped: list[str] = field(default_factory=list)  # what the pivot could not carry (named)
    native_only: str | None = None  # why only offers of the caller's API can serve it


class StreamWriter:
    """One streamed answer, written in the caller's API."""

    def items(self, items: list[Any]) -> bytes:
        """The bytes for what one upstream read produced (the translator's stream items)."""
        raise NotImplementedError

    def end(self, usage: Usage, cost: Decimal) -> bytes:
        """What follows the last item when the stream ended normally."""
        raise NotImplementedError

    def error(self, err: GatewayError, request_id: str) -> bytes:
        """What ends a stream that failed after its first byte (SPEC §2.1), in the caller's
        error shape."""
        raise NotImplementedError


class FrontEnd:
    api: ClassVar[str] = "openai"  # translators whose `source` is this API pass the answer through
    endpoint: ClassVar[str] = "chat"  # recorded on the request
    native_offers: ClassVar[str] = "models of this API"  # who serves a native-only request (a 400 says)
    # Fields of the caller's own body that the gateway consumes (never sent to a native offer).
    consumed: ClassVar[tuple[str, ...]] = GATEWAY_FIELDS
    # The catalog output modality a model needs to be served here ("embeddings" models answer on
    # /v1/embeddings only, chat models everywhere else).
    modality: ClassVar[str] = "text"
    # Whether the request itself asks for chat history (Responses' `store: true`); a key's
    # `store_history` and the `x-gatewayz-history` header ask for every front end.
    stores_history: bool = False
    # Where models of other modalities are served, for the 400 that redirects the caller.
    elsewhere: ClassVar[dict[str, str]] = {
        "embeddings": "POST /v1/embeddings",
        "image": "POST /v1/images/generations",
    }

    def check(self, body: Any, max_n: int) -> ChatParams:
        """The request checked, and what routing and metering need from it."""
        return check_chat(body, max_n)

    def response(self, answer_body: dict[str, Any], tr: ChatTranslator, usage: Usage, cost: Decimal) -> Any:
        """The caller's body for a whole answer: what orjson writes (an `orjson.Fragment` for
        bytes already written)."""
        raise NotImplementedError

    def writer(self, call: Call, tr: ChatTranslator, model_id: str) -> StreamWriter:
        raise NotImplementedError
