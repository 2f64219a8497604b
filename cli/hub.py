"""hub: support commands against a running system (its Temporal cluster and settings).

    hub leads redrive --status failed --since 24h --dry-run
    hub leads assign 5725767000000412001 dealer-sp-interior --by ana.souza
    hub leads reassign 5725767000000412001 dealer-sp-paulista --reason "customer moved" --by ana.souza
    hub parked list
    hub parked redrive --partner zoho --yes
    hub orders redrive --since 24h --yes
    hub opportunities redrive --status terminated --since 24h --yes
    hub replay --workflow-id lead-5725767000000412001
    hub syncs trigger catalog
    hub syncs status
    hub backfill orders --since 2024-11-01 --until 2026-10-31 --rate 20
    hub dbt build --full-refresh
    hub dbt status

A command that starts long work prints its progress until the work ends (Ctrl-C stops watching; the
work goes on in Temporal), or returns at once with ``--detach``. ``--json`` prints JSON lines, one
object per line with a ``type``, for scripts. Exit code 0: done; 1: the command ran but did not do what
it was asked (see the message on stderr or the output); 2: wrong usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from cli import backfill, dbt, leads, opportunities, orders, parked, replay, routing, syncs
from cli.command import Context
from cli.output import FAILED, Output
from core.settings import Settings, get_settings
from core.temporal import connect, temporal_unavailable
from db.engine import database_busy, database_unavailable


def parser() -> argparse.ArgumentParser:
    hub = argparse.ArgumentParser(
        prog="hub", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hub.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    # Every command takes --json after its name too; SUPPRESS keeps one given before the name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON lines")
    commands = hub.add_subparsers(dest="command", required=True)
    leads.add_commands(commands, common)
    routing.add_commands(commands, common)
    orders.add_commands(commands, common)
    opportunities.add_commands(commands, common)
    parked.add_commands(commands, common)
    replay.add_commands(commands, common)
    syncs.add_commands(commands, common)
    backfill.add_commands(commands, common)
    dbt.add_commands(commands, common)
    return hub


async def run(argv: list[str] | None, settings: Settings) -> int:
    """Run one command; its exit code."""
    return await execute(parser().parse_args(argv), settings)


async def execute(args: argparse.Namespace, settings: Settings) -> int:
    """Run the parsed command. Temporal is connected to at its first call: the commands that read only
    the portal database (``leads explain``, ``routing simulate``) work while Temporal is away. What
    Temporal answers, or its absence, is a message and exit code 1; anything else is a bug, with its
    stack."""
    out = Output(args.json)
    client = await connect(settings, lazy=True)
    try:
        code: int = await args.handler(args, Context(settings, client, out))
    except WorkflowFailureError as error:
        return out.fail(f"the workflow failed: {error.cause or error}")
    except TimeoutError as error:  # the SDK's, or a wait of the command's own (it names what it waited for)
        return out.fail(
            f"timed out: {error}"
            if str(error)
            else f"Temporal at {settings.temporal_address} did not answer in time"
        )
    except (RPCError, RuntimeError) as error:
        if temporal_unavailable(error):
            return out.fail(f"cannot reach Temporal at {settings.temporal_address}: {error}")
        if isinstance(error, RPCError):
            return out.fail(
                f"Temporal refused the call ({error.status.name if error.status else '?'}): {error}"
            )
        raise
    except SQLAlchemyError as error:
        if database_busy(error):
            return out.fail(
                "the portal database is busy (another process holds what this command changes, a lock or"
                " statement timed out): try again"
            )
        if database_unavailable(error):
            return out.fail(
                f"cannot reach the portal database ({type(error).__name__}): see HUB_DATABASE_URL"
            )
        raise
    return code


def settings_or_exit() -> Settings:
    """The settings, or their faults named (never their values: some are secrets) and exit code 1."""
    try:
        return get_settings()
    except ValidationError as error:
        faults = "; ".join(
            f"{'.'.join(str(part) for part in fault['loc']) or 'settings'}: {fault['msg']}"
            for fault in error.errors(include_input=False, include_url=False)
        )
    except SettingsError as error:  # a value its type cannot even be read from (malformed JSON, say)
        faults = str(error).split(":", 1)[0]  # "error parsing value for field ...", not the value
    print(f"hub: the settings are not valid: {faults}", file=sys.stderr)
    sys.exit(FAILED)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)  # --help and wrong usage need no settings
    try:
        code = asyncio.run(execute(args, settings_or_exit()))
    except KeyboardInterrupt:
        goes_on = (
            "no build left running"  # hub dbt build runs its build itself, and stops it
            if args.command == "dbt"
            else "work already started in Temporal goes on (see the Temporal UI)"
        )
        print(f"hub: interrupted; {goes_on}", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
