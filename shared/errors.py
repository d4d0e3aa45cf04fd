"""One error hierarchy, rendered in one place.

Every failure a caller can see is a `GatewayError` subclass that declares its HTTP status and
type. `render_openai` and `render_anthropic` turn one into the envelope of the route's API
(SPEC §10); nothing else in the code base writes an error body.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    anthropic_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    anthropic_type = "authentication_error"
    default_code = "invalid_api_key"


class InsufficientCredits(GatewayError):
    status = 402
    type = "insufficient_credits"
    anthropic_type = "billing_error"
    default_code = "insufficient_credits"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    anthropic_type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    anthropic_type = "not_found_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class Conflict(GatewayError):
    """409: a duplicate email, an idempotency key reused for another change, a key rotated twice."""

    status = 409
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    anthropic_type = "request_too_large"
    default_code = "request_too_large"


class Unprocessable(GatewayError):
    status = 422
    type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamFailed(GatewayError):
    """Every offer was tried and none answered usably."""

    status = 502
    type = "upstream_error"
    anthropic_type = "api_error"
    default_code = "upstream_error"


class NoProviderAvailable(GatewayError):
    status = 503
    type = "service_unavailable"
    anthropic_type = "overloaded_error"
    default_code = "no_provider_available"


class DependencyUnavailable(GatewayError):
    """A store this instance needs (the database, or the limiter's store configured fail-closed)
    does not answer. Always carries `retry-after`: an outage is worth retrying shortly."""

    status = 503
    type = "service_unavailable"
    anthropic_type = "overloaded_error"
    default_code = "dependency_unavailable"
    RETRY_AFTER = "2"  # seconds: a restart or fail-over of a managed database takes a few

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("retry-after", self.RETRY_AFTER)


class LoopDetected(GatewayError):
    """508: a request this gateway sent upstream came back to it (its own `via` mark)."""

    status = 508
    type = "api_error"
    anthropic_type = "api_error"
    default_code = "loop_detected"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    anthropic_type = "api_error"
    default_code = "upstream_timeout"


class InternalError(GatewayError):
    status = 500
    type = "api_error"
    anthropic_type = "api_error"
    default_code = "internal_error"


# Status → class, for errors passed through from an upstream (a caller mistake the vendor caught).
_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    402: InsufficientCredits,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
    502: UpstreamFailed,
    503: NoProviderAvailable,
    504: UpstreamTimeout,
}


def error_for_status(status: int, message: str, **kwargs: Any) -> GatewayError:
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = InvalidRequest if 400 <= status < 500 else UpstreamFailed
    err = cls(message, **kwargs)
    if cls is InvalidRequest and status != 400:
        err.status_override = status  # type: ignore[attr-defined]
    return err


def status_of(err: GatewayError) -> int:
    return int(getattr(err, "status_override", err.status))


def openai_body(err: GatewayError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": err.message,
        "type": err.type,
        "param": err.param,
        "code": err.code,
    }
    if request_id:
        body["request_id"] = request_id
    return {"error": body}


def render_openai(err: GatewayError, request_id: str | None) -> bytes:
    return orjson.dumps(openai_body(err, request_id))


def render_anthropic(err: GatewayError, request_id: str | None) -> bytes:
    body: dict[str, Any] = {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)
