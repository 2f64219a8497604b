"""``hub-rules load FILE``: migrate the portal database and load dealers and routing rules."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError

from core.settings import get_settings
from db.engine import one_off_sessions
from db.migrate import upgrade
from db.rules import apply_rules, parse_rules


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

    url = args.database_url or get_settings().database_url
    try:
        counts = asyncio.run(load(args.file, url))
    except (OSError, ValueError, ValidationError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    print(
        f"loaded {args.file}: {counts['created']} created, {counts['updated']} updated, "
        f"{counts['deactivated']} deactivated"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
