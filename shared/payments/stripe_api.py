"""The Stripe API client of this process: the `stripe` library, built once per runtime on first
use (never at import: billing routes only pay for it), pointed at STRIPE_API_BASE when set (tests:
the fake of tests/fakes/stripe_fake.py).

Stripe's failures become the gateway's: unreachable, rate-limited or failing (5xx) → 503 with
retry-after; anything else it refused (a bad price id, a bad key) → 502, its message kept for the
log, not for the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.errors import DependencyUnavailable, UpstreamFailed
from shared.runtime import Runtime

log = logging.getLogger("gatewayz.payments")
T = TypeVar("T")
_CACHE_KEY = "stripe_client"


def client(rt: Runtime) -> Any:
    cached = rt.cache.get(_CACHE_KEY)
    if cached is not None:
        return cached
    settings = rt.settings.payments
    if not settings.secret_key:
        raise DependencyUnavailable("Payments are not configured on this gateway (STRIPE_SECRET_KEY).")
    import stripe

    http = _httpx_client(stripe)
    bases: Any = {"api": settings.api_base} if settings.api_base else None
    built = stripe.StripeClient(
        settings.secret_key,
        base_addresses=bases,
        http_client=http,
        max_network_retries=1,  # POSTs carry the library's idempotency key: a retry creates nothing twice
    )
    rt.cache[_CACHE_KEY] = built
    rt.closers.append(http.close_async)
    return built


def _httpx_client(stripe: Any) -> Any:
    """The library's httpx client, sending the form body as `content=`: it passes the encoded
    text as `data=`, which httpx 0.28 deprecates for raw text (a DeprecationWarning per call)."""

    class Client(stripe.HTTPXClient):
        def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
            args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
            kwargs["content"] = kwargs.pop("data") or None
            return args, kwargs

    return Client(timeout=20)


async def call(operation: Callable[[], Awaitable[T]]) -> T:
    import stripe

    try:
        return await operation()
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise DependencyUnavailable("Stripe cannot be reached now; retry shortly.") from exc
    except stripe.StripeError as exc:
        status = exc.http_status or 502
        log.warning("stripe refused a request: %s (%s)", exc.user_message or exc, status)
        if status >= 500:
            raise DependencyUnavailable("Stripe is failing now; retry shortly.") from exc
        raise UpstreamFailed(
            "The payment provider refused the request.", code="payment_provider_error"
        ) from exc
