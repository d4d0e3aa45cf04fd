"""The runtime dependencies in pyproject.toml are exactly what the gateway imports.

What shared/ and functions/ import (read with `ast`, so that imports inside functions — the lazy
ones of cold-start-sensitive paths — count too; imports under `if TYPE_CHECKING:` do not) must be
declared in `[project] dependencies`: the Lambda artifact and Vercel install that list only, so an
import covered by the dev extras alone works in tests and fails in production. And every runtime
dependency must be imported somewhere (or be named below with the reason it is not), so the
deployed bundle carries nothing the gateway does not use.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_ROOTS = ("shared", "functions")
FIRST_PARTY = {"shared", "functions"}
# Declared runtime dependencies that no `import` statement names, and why they are needed.
USED_WITHOUT_IMPORT = {
    "uvloop": "`gatewayz serve` asks uvicorn for loop='uvloop' by name",
    "boto3": "Powertools `parameters` (shared/cloud_secrets.py) builds its Secrets Manager and SSM clients with it",
}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return normalise(match.group(1))


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    dev = {requirement_name(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(tree: ast.AST) -> set[str]:
    """Module names (dotted) imported anywhere in the tree, `if TYPE_CHECKING:` blocks excepted."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            assert isinstance(node, ast.If)
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def owner_of(dotted: str, candidates: list[str]) -> str:
    """The distribution whose files hold the module `dotted` (one of a namespace's many)."""
    spec = importlib.util.find_spec(dotted)
    assert spec is not None and spec.origin, dotted
    origin = Path(spec.origin).resolve()
    for name in dict.fromkeys(candidates):
        files = importlib.metadata.distribution(name).files or []
        if any(
            Path(str(importlib.metadata.distribution(name).locate_file(f))).resolve() == origin for f in files
        ):
            return name
    raise AssertionError(f"no installed distribution of {sorted(set(candidates))} holds {dotted}")


def runtime_imports() -> dict[str, set[str]]:
    """Third-party distribution → the runtime files that import it."""
    distributions = importlib.metadata.packages_distributions()
    used: dict[str, set[str]] = {}
    for root in RUNTIME_ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            for dotted in imported_modules(ast.parse(path.read_text(), str(path))):
                module = dotted.split(".")[0]
                if module in sys.stdlib_module_names or module in FIRST_PARTY:
                    continue
                names = distributions.get(module)
                assert names, (
                    f"{path.relative_to(ROOT)} imports {module!r}, which no installed package provides"
                )
                if len(set(names)) > 1:  # a namespace package (opentelemetry): the module's own owner
                    names = [owner_of(dotted, names)]
                for name in names:
                    used.setdefault(normalise(name), set()).add(str(path.relative_to(ROOT)))
    return used


def test_every_runtime_import_is_a_declared_runtime_dependency() -> None:
    runtime, dev = declared()
    missing = {name: sorted(files)[:3] for name, files in runtime_imports().items() if name not in runtime}
    assert not missing, (
        "imported at run time but not in [project] dependencies "
        f"({'some only in dev' if set(missing) & dev else 'nowhere'}): {missing}"
    )


def test_every_runtime_dependency_is_imported() -> None:
    runtime, _ = declared()
    unused = runtime - set(runtime_imports()) - set(USED_WITHOUT_IMPORT)
    assert not unused, f"declared at run time but imported nowhere in shared/ or functions/: {sorted(unused)}"


def test_the_scan_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import only_for_types\nelse:\n    import at_run_time\n"
        "def f():\n    import lazily.sub\n    from deep.er import x\n"
    )
    assert imported_modules(tree) == {"typing", "at_run_time", "lazily.sub", "deep.er"}
