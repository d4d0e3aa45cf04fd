"""How an upstream call failed, as every layer above the transport sees it.

The transport raises `UpstreamError` for connect failures, timeouts and broken streams; each
dialect classifies a vendor's error answers into the same type; the failover walk decides on
`failover` whether the next offer is tried (SPEC §3).
"""

from __future__ import annotations

from collections.abc import Mapping

# Statuses on which the next offer is tried (SPEC §3): the provider's problem, not the caller's.
FAILOVER_STATUSES = frozenset({401, 402, 403, 408, 429})


def fails_over(status: int | None) -> bool:
    """None is a transport failure (connect error, reset, timeout)."""
    return status is None or status >= 500 or status in FAILOVER_STATUSES


class UpstreamError(Exception):
    """An upstream call that did not produce a usable answer, classified by its dialect.

    `status` is the upstream HTTP status, or None for a transport failure. `kind` is one of
    connect, timeout, protocol, http, stream (an error reported inside a stream).
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        kind: str = "http",
        retry_after: float | None = None,
        vendor_type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.retry_after = retry_after
        self.vendor_type = vendor_type
        self.param = param

    @property
    def failover(self) -> bool:
        return fails_over(self.status)

    def label(self) -> str:
        return str(self.status) if self.status is not None else self.kind


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: treat as long, the pipeline fails over instead of waiting
