"""What must differ between execution environments restored from one SnapStart snapshot.

With SnapStart (template.yaml), Lambda runs a function version's init phase once, when the version
is published, snapshots the environment, and restores every later cold start from that snapshot:
state seeded at import is then the same in all of them. The gateway's row and request ids draw 64
bits from a PRNG seeded once per process (`shared.billing.ledger.new_id`) after the time in
milliseconds; two environments restored from one snapshot would draw the same sequence, and ids
minted in the same millisecond would collide. The after-restore hook reseeds it (and the `random`
module's generator) from the OS. Nothing else is built at import: the runtime (database pool,
upstream connections) is built on the first request, after the restore
(https://docs.aws.amazon.com/lambda/latest/dg/snapstart-uniqueness.html).
"""

from __future__ import annotations

import random
import sys

_registered = False


def reseed() -> None:
    random.seed()
    ledger = sys.modules.get("shared.billing.ledger")
    if ledger is not None:  # not imported yet: it seeds itself when it is
        ledger.reseed_ids()


def register() -> None:
    """Run `reseed` after each restore (once per process; called at import by lambda_handler)."""
    global _registered
    if _registered:
        return
    from snapshot_restore_py import register_after_restore  # the Lambda Python runtimes' hook registry

    register_after_restore(reseed)
    _registered = True
