"""Spend by key on the keys page, and usage by provider and by key (issue 19 §3), computed from
what `GET /v1/usage` answers for the signed-in user: requests through two keys, served by the
fake OpenAI upstream, show up under the key and the provider that served them."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from shared.store import now_text
from tests.harness import GatewayServer
from tests.store.support import query
from tests.web.conftest import WebUser, make_user, page_text, signed_in_client

SHOWN = Decimal("0.000001")  # the pages show costs to the millionth of a dollar


def chat(gateway: GatewayServer, key: str) -> None:
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text


def records(gateway: GatewayServer, key: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{gateway.url}/v1/usage?limit=100", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    return answer.json()["data"]


def money(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def test_each_key_shows_what_it_spent(web_gateway: GatewayServer, web_user: WebUser) -> None:
    second = httpx.post(
        f"{web_gateway.url}/v1/keys",
        headers={"authorization": f"Bearer {web_user.key}"},
        json={"name": "<i>batch</i> job"},
    ).json()
    for _ in range(2):
        chat(web_gateway, web_user.key)
    chat(web_gateway, second["key"])
    spent: dict[str, Decimal] = defaultdict(Decimal)
    count: dict[str, int] = defaultdict(int)
    for record in records(web_gateway, web_user.key):
        spent[record["key_id"]] += Decimal(record["cost"])
        count[record["key_id"]] += 1
    assert sorted(count.values()) == [1, 2]
    assert len(spent) == 2 and all(cost > 0 for cost in spent.values())

    html = page_text(signed_in_client(web_gateway, web_user.key), "/dashboard/keys")
    for key_id, cost in spent.items():
        row = re.search(rf'<tr data-key-id="{key_id}">(.*?)</tr>', html, re.S)
        assert row, key_id
        cell = re.search(
            r'<td class="num spend">\$([0-9.,]+)<br><span class="small">(\d+) requests', row.group(1)
        )
        assert cell and money(cell.group(1)) == cost.quantize(SHOWN), (key_id, row.group(1))
        assert int(cell.group(2)) == count[key_id]


def test_usage_is_broken_down_by_provider_and_by_key(web_gateway: GatewayServer) -> None:
    user = make_user(web_gateway)
    other = httpx.post(
        f"{web_gateway.url}/v1/keys",
        headers={"authorization": f"Bearer {user.key}"},
        json={"name": "<script>alert(1)</script>"},
    ).json()
    chat(web_gateway, user.key)
    chat(web_gateway, other["key"])
    total = sum(Decimal(r["cost"]) for r in records(web_gateway, user.key))
    html = page_text(signed_in_client(web_gateway, user.key), "/dashboard/usage?days=7")
    providers = html.split('id="provider-h"', 1)[1].split("</section>", 1)[0]
    row = re.search(
        r"<tr><td>openai</td><td class=\"num\">2</td><td class=\"num\">0</td>.*?\$([0-9.,]+)</td></tr>",
        providers,
    )
    assert row and money(row.group(1)) == total.quantize(SHOWN), providers
    keys = html.split('id="key-h"', 1)[1].split("</section>", 1)[0]
    assert f"&lt;script&gt;alert(1)&lt;/script&gt; (…{other['last4']})" in keys
    assert "<script>alert(1)" not in html
    # The charts' data: one series per provider and per key, as JSON the browser never runs.
    chart = html.split('id="provider-data">', 1)[1].split("</script>", 1)[0]
    assert chart.count('"label"') == 1 and '"label": "openai"' in chart
    chart = html.split('id="key-data">', 1)[1].split("</script>", 1)[0]
    assert chart.count('"label"') == 2 and r"\u003cscript\u003e" in chart


def test_the_csv_export_and_the_breakdowns_keep_to_the_period(web_gateway: GatewayServer) -> None:
    user = make_user(web_gateway)
    chat(web_gateway, user.key)
    chat(web_gateway, user.key)
    old, new = records(web_gateway, user.key)[::-1]
    ten_days_ago = now_text(datetime.now(UTC) - timedelta(days=10))
    url = web_gateway.app.state.runtime.settings.database_url
    query(
        url,
        "UPDATE request_records SET created_at = :t WHERE request_id = :id",
        {"t": ten_days_ago, "id": old["request_id"]},
    )
    client = signed_in_client(web_gateway, user.key)

    week = client.get("/dashboard/usage.csv?days=7")
    assert week.status_code == 200 and week.headers["content-type"].startswith("text/csv")
    assert 'filename="gatewayz-usage-7d.csv"' in week.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(week.text)))
    assert [(r["request_id"], r["cost"], r["model"]) for r in rows] == [
        (new["request_id"], new["cost"], new["model"])
    ]
    month = list(csv.DictReader(io.StringIO(client.get("/dashboard/usage.csv?days=30").text)))
    assert [r["request_id"] for r in month] == [new["request_id"], old["request_id"]]

    html = page_text(client, "/dashboard/usage?days=7")
    providers = html.split('id="provider-h"', 1)[1].split("</section>", 1)[0]
    assert '<tr><td>openai</td><td class="num">1</td>' in providers
    keys = page_text(client, "/dashboard/keys")  # the last 30 days: both
    assert re.search(r'<td class="num spend">\$[0-9.,]+<br><span class="small">2 requests', keys)
