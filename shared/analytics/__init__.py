"""Usage analytics (SPEC §9, issue 18): daily rollups of the per-request records, the summaries read
from them (`/v1/usage/summary`, `/admin/analytics`, `/v1/activity`), the public model rankings,
and the retention of raw records.

- `buckets`: the fixed latency histogram shared by the rollups and the raw-record reads;
- `rollup`: the scheduled job that (re)computes whole UTC days from `request_records` into
  `usage_daily`, and prunes raw records of days already rolled up;
- `summary`: one query shape over rollups (days before the watermark) and raw records (the tail).
"""
