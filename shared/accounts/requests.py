"""Request bodies of the account and admin routes: strict models, exact money, bounded sizes.

Every body is parsed here before anything is written, so bad input is a 400 that changes nothing.
JSON numbers are read as `Decimal` (never through a float), so `"0.1"` and `0.1` are the same exact
amount; an amount finer than a picodollar is refused rather than rounded. Unknown fields, wrong
types (no silent `"5"` → 5) and oversized values are refused.

On a PATCH, a field left out is kept and a field sent as `null` is cleared (RFC 7396), nested
`spend_limits` / `rate_limits` included.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from shared.billing import money, to_pico
from shared.billing.pricing import QUANTUM as PICODOLLAR
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.store import now_text

MAX_BODY_BYTES = 64 * 1024
MAX_CREDIT_CHANGE = Decimal(1_000_000)  # USD per grant or adjustment: a typo guard, not a policy

Body = TypeVar("Body", bound=BaseModel)


# --- field types -------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal:
    """A string, integer or (parsed-as-Decimal) JSON number → an exact amount in whole picodollars.

    Checked on the digits themselves, not with context arithmetic, which would round a long value
    or overflow on a huge exponent instead of refusing it."""
    if isinstance(value, bool):
        raise ValueError("must be a decimal string or number")
    if isinstance(value, float):
        value = repr(value)  # Python callers only: the body parser never makes floats
    if isinstance(value, str):
        if len(value) > 40:
            raise ValueError("must be a decimal string of at most 40 characters")
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("must be a decimal string such as '12.50'") from None
    if isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError("must be a finite decimal amount")
    if value.adjusted() >= 8:  # a BIGINT of picodollars ends near 9.2 million USD anyway
        raise ValueError("is out of range")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if exponent < -12 and any(digits[exponent + 12 :]):
        raise ValueError("must be a whole number of picodollars (at most 12 decimal places)")
    exact = value.quantize(PICODOLLAR)  # exact now: at most 20 digits
    try:
        to_pico(exact)
    except ValueError:
        raise ValueError("is out of range") from None
    return Decimal(money(exact))


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _credit_change(value: Decimal) -> Decimal:
    if value == 0:
        raise ValueError("must not be zero")
    if abs(value) > MAX_CREDIT_CHANGE:
        raise ValueError(f"must be at most {MAX_CREDIT_CHANGE} USD in one change")
    return value


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 time such as '2027-01-31T00:00:00Z'") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # no offset: UTC


def _future_time(value: str) -> str:
    moment = _moment(value)
    if moment <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return now_text(moment)


def time_param(value: str | None, param: str) -> str | None:
    """A query parameter's ISO 8601 time in the stored form (comparable as text)."""
    if value is None:
        return None
    try:
        return now_text(_moment(value[:64]))
    except ValueError as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param) from None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None


def _origin(value: str) -> str:
    text = value.strip().lower().rstrip("/")
    parts = urlsplit(text)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or "*" in parts.netloc
        or parts.path
        or parts.query
        or parts.fragment
        or not port_ok
    ):
        raise ValueError(f"{value!r} is not an origin such as 'https://app.example.com'")
    return text


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_EMAIL = re.compile(
    r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$"
)


def _email(value: str) -> str:
    text = value.strip().lower()
    if len(text) > 254 or not _EMAIL.match(text):
        raise ValueError(f"{value!r} is not an email address")
    return text


# What the OpenAPI document shows for an amount (the validator itself has no schema to offer).
_USD = WithJsonSchema(
    {"type": ["string", "number"], "description": "USD, a decimal string such as '12.50' (or a JSON number)"}
)
Money = Annotated[Decimal, PlainValidator(_decimal), _USD]
NonNegativeMoney = Annotated[Decimal, PlainValidator(_decimal), AfterValidator(_non_negative), _USD]
CreditAmount = Annotated[Decimal, PlainValidator(_decimal), AfterValidator(_credit_change), _USD]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_NO_CONTROL)
]
Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
PlanId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Scope = Literal["inference", "read", "keys", "billing", "admin"]
Scopes = Annotated[list[Scope], Field(min_length=1, max_length=5), AfterValidator(_unique)]
FutureTime = Annotated[str, Field(max_length=64), AfterValidator(_future_time)]
Cidr = Annotated[str, Field(max_length=64), AfterValidator(_cidr)]
Origin = Annotated[str, Field(max_length=255), AfterValidator(_origin)]
ModelPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@+*?\[\]-]+$")
]
Limit = Annotated[int, Field(ge=1, le=1_000_000_000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SpendLimitsIn(_Body):
    day: NonNegativeMoney | None = None
    month: NonNegativeMoney | None = None
    total: NonNegativeMoney | None = None


class RateLimitsIn(_Body):
    requests_per_minute: Limit | None = None
    requests_per_day: Limit | None = None
    tokens_per_minute: Limit | None = None
    tokens_per_day: Limit | None = None
    concurrency: Limit | None = None


class KeyFields(_Body):
    """The settings a key's owner may set at creation and change later."""

    scopes: Scopes | None = None
    expires_at: FutureTime | None = None
    ip_allowlist: (
        Annotated[list[Cidr], Field(min_length=1, max_length=100), AfterValidator(_unique)] | None
    ) = None
    allowed_origins: (
        Annotated[list[Origin], Field(min_length=1, max_length=50), AfterValidator(_unique)] | None
    ) = None
    allowed_models: (
        Annotated[list[ModelPattern], Field(min_length=1, max_length=100), AfterValidator(_unique)] | None
    ) = None
    spend_limits: SpendLimitsIn | None = None
    rate_limits: RateLimitsIn | None = None
    store_history: bool | None = None  # chat history for this key's requests (opt-in)


class KeyCreate(KeyFields):
    name: Name = "default"
    environment: Literal["live", "test"] = "live"


class KeyUpdate(KeyFields):
    name: Name | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> KeyUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change: send at least one field")
        for field in ("name", "scopes", "disabled", "store_history"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class KeyRotate(_Body):
    grace_seconds: int = Field(default=0, ge=0, le=86_400)


class UserCreate(_Body):
    email: Email
    role: Literal["user", "admin"] = "user"
    plan: PlanId = "free"
    credits: NonNegativeMoney = Decimal(0)
    key_name: Name = "default"
    scopes: Scopes | None = None  # of the first key; default: every scope the role may hold


class UserUpdate(_Body):
    status: Literal["active", "suspended"] | None = None
    plan: PlanId | None = None
    role: Literal["user", "admin"] | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UserUpdate:
        if all(getattr(self, f) is None for f in ("status", "plan", "role")):
            raise ValueError("nothing to change: send status, plan or role")
        return self


class CreditChange(_Body):
    amount: CreditAmount  # positive: a grant; negative: an adjustment (claw-back)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    idempotency_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$")] | None = None


# --- parsing -----------------------------------------------------------------------------------


def invalid(exc: ValidationError) -> InvalidRequest:
    """The first problem of a validation error as the route's 400 (`param` names the field)."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return InvalidRequest(f"{loc or 'body'}: {message}", param=loc or None)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


async def parse_body(request: Request, model: type[Body]) -> Body:
    """The request's JSON object validated as `model`; an empty body is `{}`."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body exceeds {MAX_BODY_BYTES // 1024} KiB.")
    data: Any = {}
    if raw.strip():
        try:
            data = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return validate(model, data)


def validate(model: type[Body], data: Any) -> Body:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None
