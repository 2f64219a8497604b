"""``python -m devstack up [--demo]``: run the whole system locally; ``demo`` runs the demo against it."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from db.rules import parse_rules
from db.rules_cli import load
from devstack.demo import run_demo
from devstack.stack import Ports, Stack

DEFAULT_RULES = PROJECT_ROOT / "config" / "dealers.example.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Temporal, the simulators, the API and the worker; Ctrl-C stops all")
    up.add_argument("--demo", action="store_true", help="send demo lead webhooks once the stack is healthy")
    up.add_argument("--rules", type=Path, default=DEFAULT_RULES, help="dealers and routing rules (YAML)")
    up.add_argument("--state-dir", type=Path, default=PROJECT_ROOT / "var")
    sub.add_parser("demo", help="send demo lead webhooks to a running stack")
    return parser.parse_args(argv)


def up(args: argparse.Namespace) -> int:
    ports = Ports()
    settings = Settings(state_dir=args.state_dir, temporal_address=f"127.0.0.1:{ports.temporal}")
    print(f"Portal database: {settings.database_url}", flush=True)
    counts = asyncio.run(load(args.rules, settings.database_url))
    print(f"Routing rules: {args.rules} ({counts['created']} new, {counts['updated']} updated dealers)")
    stack = Stack(ports, args.state_dir, [dealer.id for dealer in parse_rules(args.rules).dealers])
    print("Starting the local stack (logs in var/logs/):", flush=True)
    try:
        stack.start()
        if args.demo:
            asyncio.run(demo(settings, ports))
        print("\nAll parts healthy. Ctrl-C stops everything.", flush=True)
        while (dead := stack.check()) is None:
            time.sleep(1)
        print(
            f"\n{dead} exited unexpectedly; see {stack.log_dir / (dead + '.log')}. Stopping.", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    except RuntimeError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


async def demo(settings: Settings, ports: Ports) -> bool:
    return await run_demo(
        settings,
        api_url=f"http://127.0.0.1:{ports.api}",
        simulators_url=f"http://127.0.0.1:{ports.simulators}",
        ui_url=f"http://127.0.0.1:{ports.temporal_ui}",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "up":
        return up(args)
    ports = Ports()
    return 0 if asyncio.run(demo(Settings(temporal_address=f"127.0.0.1:{ports.temporal}"), ports)) else 1


if __name__ == "__main__":
    sys.exit(main())
