"""``python -m devstack up [--demo]``: run the whole system locally; ``demo`` runs the demo against it."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.settings import PROJECT_ROOT, Settings
from db.rules import parse_rules
from db.rules_cli import load
from devstack.demo import run_demo
from devstack.stack import EXAMPLE_RULES, STOP_SIGNALS, Ports, Stack, stack_environment
from simulators.config import SimulatorConfig

HIGHEST_PORT = 65535
FULL_CATALOG_SKUS = SimulatorConfig.model_fields["vtex_catalog_skus"].default
DEMO_CATALOG_SKUS = 1_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="start Temporal, the simulators, the API and the worker; Ctrl-C (or SIGTERM, SIGHUP) stops all",
    )
    up.add_argument("--demo", action="store_true", help="send demo lead webhooks once the stack is healthy")
    up.add_argument("--rules", type=Path, default=EXAMPLE_RULES, help="dealers and routing rules (YAML)")
    up.add_argument("--state-dir", type=Path, default=PROJECT_ROOT / "var")
    up.add_argument(
        "--catalog-skus", type=sku_count, default=None, metavar="N",
        help=f"SKUs in the simulated VTEX catalog (default: {DEMO_CATALOG_SKUS:,} with --demo, so the demo's"
        f" catalog sync takes seconds; else the simulators' {FULL_CATALOG_SKUS:,})",
    )  # fmt: skip
    add_port_base(up)
    demo = sub.add_parser("demo", help="send demo lead webhooks to a running stack")
    add_port_base(demo)
    return parser.parse_args(argv)


def add_port_base(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port-base", type=port_base, default=None, metavar="N",
        help="ports N, N+1, ... for every part instead of the usual ones (a second stack, e.g. in a test)",
    )  # fmt: skip


def port_base(text: str) -> int:
    """An argparse type: a first port that leaves room for every part's port."""
    base = int(text)
    last = HIGHEST_PORT - len(dataclasses.fields(Ports)) + 1
    if not 1024 <= base <= last:
        raise argparse.ArgumentTypeError(f"must be between 1024 and {last}")
    return base


def sku_count(text: str) -> int:
    """An argparse type: a catalog size the simulators accept."""
    try:
        return SimulatorConfig(vtex_catalog_skus=int(text)).vtex_catalog_skus
    except ValidationError as error:
        raise argparse.ArgumentTypeError(error.errors()[0]["msg"]) from error


def client_settings(ports: Ports, **values: Any) -> Settings:
    """Settings that reach the stack's Temporal and BigQuery emulator the way its children do."""
    env = stack_environment(ports, PROJECT_ROOT / "var", [])
    return Settings(
        temporal_address=env["HUB_TEMPORAL_ADDRESS"], bigquery_endpoint=env["HUB_BIGQUERY_ENDPOINT"], **values
    )


def rules_on_ports(path: Path, ports: Ports, state_dir: Path) -> Path:
    """The rules file, or a copy in ``state_dir`` whose dealer CRM URLs point at this stack's simulators.

    The example rules name the simulated dealer CRMs on the usual simulators port; a stack on other ports
    would otherwise deliver leads to another stack's simulators (or to nothing).
    """
    usual, ours = (f"http://127.0.0.1:{p.simulators}/" for p in (Ports(), ports))
    text = path.read_text()
    if usual == ours or usual not in text:
        return path
    state_dir.mkdir(parents=True, exist_ok=True)
    moved = state_dir / f"rules-on-port-{ports.simulators}.yaml"
    moved.write_text(text.replace(usual, ours))
    return moved


def up(args: argparse.Namespace) -> int:
    ports = Ports.from_base(args.port_base)
    settings = client_settings(ports, state_dir=args.state_dir)
    print(f"Portal database: {settings.database_url}", flush=True)
    rules = rules_on_ports(args.rules, ports, args.state_dir)
    counts = asyncio.run(load(rules, settings.database_url))
    moved = f" as {rules}" if rules != args.rules else ""
    print(f"Routing rules: {args.rules}{moved} ({counts['created']} new, {counts['updated']} updated)")
    dealer_ids = [dealer.id for dealer in parse_rules(rules).dealers]
    stack = Stack(
        ports, args.state_dir, dealer_ids, api_processes=settings.api_processes, env=simulator_env(args)
    )
    # From here on SIGTERM and SIGHUP take Ctrl-C's path: the finally below stops every child.
    for signum in STOP_SIGNALS:
        signal.signal(signum, stack.interrupt)
    print(f"Starting the local stack (logs in {stack.log_dir}/):", flush=True)
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
        stop(stack)


def simulator_env(args: argparse.Namespace) -> dict[str, str]:
    """The simulators' settings the command line chose: the catalog's size."""
    skus = args.catalog_skus if args.catalog_skus is not None else DEMO_CATALOG_SKUS if args.demo else None
    if skus is None:
        return {}  # SIM_VTEX_CATALOG_SKUS from the environment, or the simulators' default
    return {"SIM_VTEX_CATALOG_SKUS": str(skus)}


def stop(stack: Stack) -> None:
    """Stop the stack even if the first stop signal lands just as the shutdown begins."""
    try:
        stack.stop()
    except KeyboardInterrupt:
        # The first signal came as stop() began, before it ignored signals (the handler raises only
        # once): stop again, this time to the end.
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
    ports = Ports.from_base(args.port_base)
    return 0 if asyncio.run(demo(client_settings(ports), ports)) else 1


if __name__ == "__main__":
    sys.exit(main())
