"""The example dealers (config/dealers.example.yaml), which the benchmarks adapt and write for the stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devstack.stack import EXAMPLE_RULES


def example_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(EXAMPLE_RULES.read_text(encoding="utf-8"))
    return rules


def example_dealer_ids() -> list[str]:
    return [dealer["id"] for dealer in example_rules()["dealers"]]


def write_rules(path: Path, rules: dict[str, Any]) -> None:
    """Write ``rules`` where ``dev.py up --rules`` reads them, and say how to start the stack with them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True), encoding="utf-8")
    print(f"wrote {path}: start the stack with  python3 dev.py up --rules {path}")
