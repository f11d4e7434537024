"""The house's layers, checked from the code's own imports (no import is executed).

Packages form layers: the ledger and permissions at the bottom, then sellers, events, webhooks, orders,
then threads and payouts, then disputes, then reports and the console. An import goes down, never up,
and never round in a circle; a lower domain that must make a higher one react gets a callback that
``app/main.py`` wires. A module that grows past 500 lines is split by meaning.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
DOMAINS = (
    "ledger",
    "permissions",
    "sellers",
    "events",
    "webhooks",
    "orders",
    "threads",
    "payouts",
    "disputes",
    "reconciliation",
    "reports",
)
# What each domain package may import among the domains (the shared modules at app/*.py are below all).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "ledger": frozenset(),
    "permissions": frozenset(),
    "sellers": frozenset({"permissions"}),
    "events": frozenset({"permissions"}),
    "webhooks": frozenset({"permissions"}),
    "orders": frozenset({"ledger", "permissions", "sellers"}),
    "threads": frozenset({"permissions", "sellers", "events", "orders"}),
    "payouts": frozenset({"ledger", "permissions", "sellers", "events", "webhooks", "orders"}),
    "disputes": frozenset({"ledger", "permissions", "sellers", "events", "webhooks", "orders", "threads", "payouts"}),
    # Above the ledger and payouts (the gateway port); nothing imports it but the wiring (main, worker, cli).
    "reconciliation": frozenset({"ledger", "permissions", "sellers", "events", "webhooks", "orders", "payouts"}),
    # The top layer, beside the console: read-only reports over every domain; nothing imports it.
    "reports": frozenset(
        {"ledger", "permissions", "sellers", "events", "webhooks", "orders", "threads", "payouts", "disputes"}
    ),
}


def package_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP).parts
        if len(parts) < 2:
            continue  # app/*.py: the shared modules and the wiring (main.py), not a domain
        package = parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.module != "app" else [f"app.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                bits = name.split(".")
                if len(bits) > 1 and bits[0] == "app" and bits[1] != package and (APP / bits[1]).is_dir():
                    found[package].add(bits[1])
    return found


@pytest.mark.parametrize("package", DOMAINS)
def test_a_domain_imports_only_the_layers_below_it(package: str) -> None:
    assert package_imports().get(package, set()) - MAY_IMPORT[package] == set()


def test_the_package_import_graph_has_no_circle() -> None:
    graph = package_imports()
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert seen.get(nxt) != 1, " -> ".join([*path, node, nxt])
            if nxt not in seen:
                visit(nxt, [*path, node])
        seen[node] = 2

    for start in sorted(graph):
        if start not in seen:
            visit(start, [])


def test_no_module_of_the_app_is_over_500_lines() -> None:
    long = {str(p.relative_to(APP)): n for p in APP.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
