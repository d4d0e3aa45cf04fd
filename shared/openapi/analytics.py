"""Document-only schemas of the usage analytics routes (shared.views.analytics): summaries,
activity, rankings and the rollup job. Money is a decimal string; latencies are milliseconds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.openapi.base import Shape


class Latency(Shape):
    p50: int | None = Field(description="Upper bound of the histogram bucket holding the median")
    p95: int | None
    p99: int | None
    max: int | None


class UsageCounts(Shape):
    requests: int
    errors: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost: str = Field(description="USD, exact decimal string")
    latency_ms: Latency


class UsageRow(UsageCounts):
    period: str = Field(description="YYYY-MM-DD, or YYYY-MM-DDTHH:00:00Z with granularity=hour")
    user_id: str | None = Field(default=None, description="With group_by=user (admin)")
    key_id: str | None = Field(default=None, description="With group_by=key (null: no key)")
    model: str | None = Field(default=None, description="With group_by=model")
    provider: str | None = Field(default=None, description="With group_by=provider")


class UsageSummary(Shape):
    object: Literal["usage.summary"] = "usage.summary"
    granularity: Literal["day", "hour"]
    start: str
    end: str
    group_by: list[Literal["user", "key", "model", "provider"]]
    data: list[UsageRow]
    totals: UsageCounts


class Use(Shape):
    requests: int
    errors: int
    tokens: int
    spend: str


class ModelUse(Use):
    model: str


class KeyUse(Use):
    id: str
    name: str
    prefix: str
    last4: str
    revoked: bool
    last_used_at: str | None


class DayUse(Use):
    date: str


class Activity(Use):
    object: Literal["activity"] = "activity"
    days: int
    start: str
    end: str
    top_models: list[ModelUse]
    keys: list[KeyUse]
    daily: list[DayUse]


class Ranked(Shape):
    rank: int
    model: str
    tokens: int
    requests: int


class Rankings(Shape):
    object: Literal["rankings"] = "rankings"
    period: Literal["day", "week", "month"]
    start: str | None = Field(description="First rolled-up day counted (null: nothing rolled up yet)")
    end: str | None
    by_tokens: list[Ranked]
    by_requests: list[Ranked]


class RollupResult(Shape):
    rolled_days: int
    rolled_through: str | None = Field(description="The first UTC day not rolled up yet")
    pruned_records: int
