"""Money sits at the bottom of the house: the ledger imports no domain, orders read money from the
ledger (not from payouts), and payouts reach disputes and threads only through the callbacks app/main.py
wires (app/payouts/reactions.py)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def imported_packages(package: str) -> set[str]:
    """The ``app.<name>`` modules and packages that any module of ``app/<package>/`` imports."""
    found: set[str] = set()
    for path in (APP / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "app":
                modules = [node.module] if node.module != "app" else [f"app.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            found |= {m.split(".")[1] for m in modules if m.startswith("app.") and m.split(".")[1] != package}
    return found


def test_the_ledger_imports_no_domain() -> None:
    assert imported_packages("ledger") <= {"db", "errors", "money", "schemas", "settings"}


def test_orders_read_money_from_the_ledger_not_from_payouts() -> None:
    assert "payouts" not in imported_packages("orders")
    assert "ledger" in imported_packages("orders")


def test_payouts_import_neither_disputes_nor_threads() -> None:
    assert imported_packages("payouts").isdisjoint({"disputes", "threads"})
