"""Running ``hub`` in the test's process, against the test's dev server, with its output captured."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from cli.hub import run
from core.settings import Settings


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def lines(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The JSON lines printed (``--json``), only those of type ``kind`` if given."""
        lines = [json.loads(line) for line in self.out.splitlines()]
        return [line for line in lines if kind is None or line["type"] == kind]


HubCli = Callable[..., Awaitable[Ran]]


@pytest.fixture
def hub_cli(capsys: pytest.CaptureFixture[str]) -> HubCli:
    """``await hub_cli(settings, "leads", "assign", ...)``: the exit code and what it printed."""

    async def run_hub(settings: Settings, *argv: str) -> Ran:
        capsys.readouterr()
        code = await run(list(argv), settings)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run_hub
