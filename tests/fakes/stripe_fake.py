"""A fake Stripe API for the real `stripe` library (pointed at it with STRIPE_API_BASE), and the
webhook events Stripe would send about what was created there.

Speaks Stripe's wire format (https://docs.stripe.com/api): form-encoded bodies with bracketed keys
(`metadata[gatewayz_user_id]=…`, `line_items[0][price_data][currency]=usd`), `Authorization:
Bearer sk_test_…` (missing or wrong: 401 with Stripe's error object), unknown parameters refused
(400 `parameter_unknown`), and `Idempotency-Key`: the same key replays the first answer. Serves
Checkout Sessions, billing portal sessions, customers and prices; events are built from the
sessions and signed the way Stripe signs them (`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256
of "t.payload">`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.server import FakeServer

SECRET_KEY = "sk_test_gatewayz_fake_0123456789"
WEBHOOK_SECRET = "whsec_gatewayz_fake_0123456789"

_SESSION_PARAMS = {
    "mode",
    "client_reference_id",
    "metadata",
    "payment_intent_data",
    "subscription_data",
    "line_items",
    "success_url",
    "cancel_url",
    "customer",
    "customer_email",
    "customer_creation",
}
_PORTAL_PARAMS = {"customer", "return_url"}
_counter = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_test{next(_counter):08d}{int(time.time() * 1000) % 100000:05d}"


def decode_form(text: str) -> dict[str, Any]:
    """`a[b][0][c]=x` → {"a": {"b": [{"c": "x"}]}} (Stripe's encoding of nested parameters)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node: Any = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(out)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_error(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> web.Response:
    body = {"error": {"type": "invalid_request_error", "message": message, "code": code, "param": param}}
    return web.json_response(body, status=status)


class StripeFake(FakeServer):
    def __init__(self, prices: dict[str, int] | None = None) -> None:
        super().__init__()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.prices = prices or {}  # price id → unit amount (cents, monthly)
        self._idempotent: dict[str, tuple[int, Any]] = {}

    def reset(self) -> None:
        super().reset()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/checkout/sessions", self.create_session),
            web.post("/v1/billing_portal/sessions", self.create_portal),
        ]

    async def _read(self, request: web.Request, allowed: set[str]) -> dict[str, Any] | web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {SECRET_KEY}":
            return stripe_error(401, "Invalid API Key provided.")
        if request.content_type != "application/x-www-form-urlencoded":
            return stripe_error(400, "Invalid request: form encoding expected.")
        raw = await request.read()
        params = decode_form(raw.decode())
        self.record(request, params, raw)
        for name in params:
            if name not in allowed:
                return stripe_error(400, f"Received unknown parameter: {name}", "parameter_unknown", name)
        return params

    def _replay(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("Idempotency-Key")
        if key and key in self._idempotent:
            status, body = self._idempotent[key]
            return web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})
        return None

    def _answer(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key:
            self._idempotent[key] = (200, body)
        return web.json_response(body, headers={"Request-Id": new_id("req")})

    async def create_session(self, request: web.Request) -> web.Response:
        replay = self._replay(request)
        if replay is not None:
            return replay
        params = await self._read(request, _SESSION_PARAMS)
        if isinstance(params, web.Response):
            return params
        mode = params.get("mode")
        if mode not in ("payment", "subscription", "setup"):
            return stripe_error(400, "Invalid mode", param="mode")
        for required in ("success_url", "line_items"):
            if required not in params:
                return stripe_error(
                    400, f"Missing required param: {required}.", "parameter_missing", required
                )
        if mode == "payment" and "subscription_data" in params:
            return stripe_error(
                400, "subscription_data is only for mode=subscription", param="subscription_data"
            )
        if mode == "subscription" and ("payment_intent_data" in params or "customer_creation" in params):
            return stripe_error(
                400, "payment_intent_data is only for mode=payment", param="payment_intent_data"
            )
        amount = 0
        for item in params["line_items"]:
            quantity = int(item.get("quantity", "1"))
            if "price" in item:
                if item["price"] not in self.prices:
                    return stripe_error(
                        400, f"No such price: '{item['price']}'", "resource_missing", "line_items"
                    )
                amount += self.prices[item["price"]] * quantity
            else:
                amount += int(item["price_data"]["unit_amount"]) * quantity
        session_id = new_id("cs")
        customer = params.get("customer")
        if customer is None and (mode == "subscription" or params.get("customer_creation") == "always"):
            customer = new_id("cus")
            self.customers[customer] = {"id": customer, "email": params.get("customer_email")}
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": mode,
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "customer": customer,
            "customer_email": params.get("customer_email"),
            "amount_total": amount,
            "currency": "usd",
            "payment_status": "unpaid",
            "status": "open",
            "payment_intent": new_id("pi") if mode == "payment" else None,
            "subscription": None,
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "line_items_sent": params["line_items"],
            "payment_intent_data": params.get("payment_intent_data"),
            "subscription_data": params.get("subscription_data"),
        }
        self.sessions[session_id] = session
        public = {
            k: v
            for k, v in session.items()
            if k not in ("line_items_sent", "payment_intent_data", "subscription_data")
        }
        return self._answer(request, public)

    async def create_portal(self, request: web.Request) -> web.Response:
        params = await self._read(request, _PORTAL_PARAMS)
        if isinstance(params, web.Response):
            return params
        if params.get("customer") not in self.customers:
            return stripe_error(
                400, f"No such customer: '{params.get('customer')}'", "resource_missing", "customer"
            )
        portal_id = new_id("bps")
        return self._answer(
            request,
            {
                "id": portal_id,
                "object": "billing_portal.session",
                "customer": params["customer"],
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.com/p/session/{portal_id}",
            },
        )

    # --- events (what Stripe would send to the webhook) -------------------------------------------
    def event(self, kind: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
        body = {
            "id": event_id or new_id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": kind,
            "data": {"object": obj},
        }
        return json.dumps(body).encode()

    def paid_session(self, session_id: str, payment_status: str = "paid") -> dict[str, Any]:
        session = self.sessions[session_id]
        session.update(status="complete", payment_status=payment_status)
        return {
            k: v
            for k, v in session.items()
            if k not in ("line_items_sent", "payment_intent_data", "subscription_data")
        }

    def refunded_charge(self, session_id: str, amount_refunded: int) -> dict[str, Any]:
        session = self.sessions[session_id]
        return {
            "id": "ch_" + session["payment_intent"][3:],
            "object": "charge",
            "amount": session["amount_total"],
            "amount_refunded": amount_refunded,
            "refunded": amount_refunded >= session["amount_total"],
            "currency": "usd",
            "payment_intent": session["payment_intent"],
            "metadata": (session["payment_intent_data"] or {}).get("metadata", {}),
        }

    def subscription(
        self,
        session_id: str,
        price: str,
        status: str = "active",
        cancel_at_period_end: bool = False,
        sub_id: str | None = None,
    ) -> dict[str, Any]:
        session = self.sessions[session_id]
        end = int(time.time()) + 30 * 86400
        return {
            "id": sub_id or session.get("subscription") or new_id("sub"),
            "object": "subscription",
            "customer": session["customer"],
            "status": status,
            "cancel_at_period_end": cancel_at_period_end,
            "metadata": (session["subscription_data"] or {}).get("metadata", {}),
            "items": {
                "object": "list",
                "data": [
                    {"id": new_id("si"), "price": {"id": price, "object": "price"}, "current_period_end": end}
                ],
            },
        }

    def invoice(
        self, subscription: dict[str, Any], price: str, invoice_id: str | None = None
    ) -> dict[str, Any]:
        return {
            "id": invoice_id or new_id("in"),
            "object": "invoice",
            "customer": subscription["customer"],
            "status": "paid",
            "amount_paid": self.prices.get(price, 0),
            "currency": "usd",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": subscription["id"],
                    "metadata": subscription["metadata"],
                },
            },
            "lines": {
                "object": "list",
                "data": [{"id": new_id("il"), "pricing": {"price_details": {"price": price}}}],
            },
        }
