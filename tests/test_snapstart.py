"""SnapStart (issue 16): environments restored from one snapshot must not mint the same ids. The
snapshot is the id generator's state at the end of the init phase; each restore runs the hooks the
function registered with `snapshot_restore_py`, as the Lambda Python runtime does."""

from __future__ import annotations

import importlib

import snapshot_restore_py

from shared.billing import ledger


def random_parts(count: int) -> list[str]:
    return [ledger.new_id("tx")[-16:] for _ in range(count)]  # the 64 random bits, time left out


def run_after_restore_hooks() -> None:
    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)


def test_a_function_registers_its_restore_hook_at_import() -> None:
    importlib.import_module("functions.catalog")  # builds `handler = lambda_handler(app, ...)`
    hooks = [func for func, _, _ in snapshot_restore_py.get_after_restore()]
    assert hooks.count(importlib.import_module("shared.snapstart").reseed) == 1


def test_restored_environments_mint_different_ids() -> None:
    importlib.import_module("functions.catalog")
    snapshot = ledger._ids.getstate()
    first = random_parts(3)  # environment A, restored without the hook
    ledger._ids.setstate(snapshot)
    assert random_parts(3) == first  # environment B the same way: the very ids A minted
    ledger._ids.setstate(snapshot)
    run_after_restore_hooks()  # environment C, as Lambda restores it
    assert not set(random_parts(3)) & set(first)


def test_snapstart_is_on_the_buffered_functions_behind_their_alias() -> None:
    from tests.test_deploy_config import TEMPLATE, load_template, sam_functions

    template = load_template(TEMPLATE.read_text())
    snapped = set()
    for logical_id, resource in sam_functions(template).items():
        props = resource["Properties"]
        if "SnapStart" not in props:
            continue
        snapped.add(logical_id)
        assert props["SnapStart"]["ApplyOn"] == {"Ref": "SnapStartOn"}, logical_id
        # SnapStart applies to published versions only: without the alias nothing calls them.
        assert props["AutoPublishAlias"] == "live", logical_id
        # A Mangum handler built by lambda_handler, which registers the restore hook.
        module = props["Handler"].removesuffix(".handler")
        assert importlib.import_module(module).handler.__class__.__name__ == "ObservedMangum", logical_id
    buffered_apis = {
        logical_id
        for logical_id, resource in sam_functions(template).items()
        if any(e["Type"] == "HttpApi" for e in (resource["Properties"].get("Events") or {}).values())
    }
    assert snapped == buffered_apis  # not the streaming functions (run.sh) nor the scheduled jobs
    assert template["Parameters"]["SnapStartOn"]["AllowedValues"] == ["PublishedVersions", "None"]
