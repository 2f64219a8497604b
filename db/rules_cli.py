"""``hub-rules load FILE``: migrate the portal database and load dealers and routing rules."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.settings import get_settings
from db.engine import one_off_sessions
from db.migrate import upgrade
from db.rules import RulesFile, apply_rules, parse_rules, unheard_dealers


async def load(path: Path, database_url: str) -> dict[str, int]:
    """Validate ``path`` and apply it to the database at ``database_url``."""
    rules = parse_rules(path)
    upgrade(database_url)
    async with one_off_sessions(database_url) as sessions:
        return await apply_rules(sessions, rules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hub-rules", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    load_cmd = sub.add_parser("load", help="load dealers and routing rules from a YAML file")
    load_cmd.add_argument("file", type=Path)
    load_cmd.add_argument("--database-url", default=None, help="defaults to HUB_DATABASE_URL")
    args = parser.parse_args(argv)

    settings = get_settings()
    url = args.database_url or settings.database_url
    try:
        counts = asyncio.run(load(args.file, url))
    except (OSError, ValueError, ValidationError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    print(
        f"loaded {args.file}: {counts['created']} created, {counts['updated']} updated, "
        f"{counts['deactivated']} deactivated"
    )
    warn_of_unheard(parse_rules(args.file), settings.dealer_webhook_secrets)
    return 0


def warn_of_unheard(rules: RulesFile, webhook_secrets: dict[str, Any]) -> None:
    """Where this environment names the dealers' webhook secrets (the API's), an SLA dealer with none
    and no CRM reads loses every lead: a warning, since the rules may be loaded apart from the API."""
    if not webhook_secrets:
        return
    for dealer_id in unheard_dealers(rules, webhook_secrets):
        print(
            f"warning: {dealer_id} has an SLA but no HUB_DEALER_WEBHOOK_SECRETS entry and no"
            " sla.status_poll_seconds: it cannot report an acceptance, so each lead it gets moves on when"
            " its SLA passes",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
