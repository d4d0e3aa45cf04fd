"""Billing notices (receipts, low balance) through a pluggable sender, never blocking a request.

Only the log sender is built (GATEWAYZ_NOTIFY=log, the default): it writes one line per receipt
after the webhook's transaction committed, which an operator's log pipeline can route. `resend`
and `smtp` are accepted names reserved for their senders (not built yet: they log too), and the
low-balance notice (GATEWAYZ_LOW_BALANCE_USD) is not sent yet.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from shared.billing import money
from shared.runtime import Runtime

log = logging.getLogger("gatewayz.notify")


async def receipt(rt: Runtime, user_id: str, amount: Decimal, payment_id: str) -> None:
    try:
        log.info("notice receipt user=%s amount_usd=%s payment=%s", user_id, money(amount), payment_id)
    except Exception:  # a notice never fails the event that caused it
        log.exception("receipt notice failed")
