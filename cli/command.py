"""What every ``hub`` command runs with, and how a command module adds its commands to the parser."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client

from cli.output import Output
from core.settings import Settings


@dataclass
class Context:
    settings: Settings
    client: Client
    out: Output


Handler = Callable[[argparse.Namespace, Context], Awaitable[int]]
Subcommands = Any  # argparse's _SubParsersAction, which it does not export


def command(
    group: Subcommands, name: str, summary: str, common: argparse.ArgumentParser, handler: Handler
) -> argparse.ArgumentParser:
    """A command that runs ``handler``, with the options every command takes (``common``: ``--json``)."""
    parser: argparse.ArgumentParser = group.add_parser(
        name, help=summary, description=summary, parents=[common]
    )
    parser.set_defaults(handler=handler)
    return parser
