#!/usr/bin/env python3
"""Set up and run the project with nothing but Python 3.11+ and pip.

    python3 dev.py up [--demo]   install into .venv, then run the whole system locally
    python3 dev.py test          install into .venv (with dev tools), then lint, type-check and test

Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def ensure_installed(extras: str) -> None:
    """Create .venv and install the project unless pyproject.toml is unchanged since the last install."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    target = f".[{extras}]" if extras else "."
    print(f"Installing {target} into .venv (first run takes a few minutes) ...", flush=True)
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", target])
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


# Arguments that want one pytest process: a chosen number of them, output shown live, a debugger.
SERIAL_ARGS = ("-n", "--numprocesses", "-s", "--capture=no", "--pdb", "--trace")


def test_processes(pytest_args: list[str]) -> list[str]:
    """Run the tests in one process more than there are cores, up to four (pytest-xdist): most tests
    wait on servers (Temporal, the emulator, dbt's child process, the simulators), so a process per core
    leaves the cores idle part of the time. Each process starts its own Temporal dev server and BigQuery
    emulator, hence the cap."""
    if any(arg.startswith(SERIAL_ARGS) for arg in pytest_args):
        return []
    return ["-n", str(max(1, min(4, (os.cpu_count() or 1) + 1)))]


def test(pytest_args: list[str]) -> None:
    ensure_installed("dev,local")
    run([str(BIN / "ruff"), "check", "."])
    run([str(BIN / "ruff"), "format", "--check", "."])
    run([str(BIN / "mypy")])
    # The slowest tests are listed at the end: the suite must stay well under 15 minutes.
    run([str(PYTHON), "-m", "pytest", "--durations=25", *test_processes(pytest_args), *pytest_args])


def up(args: list[str]) -> None:
    ensure_installed("local")
    # The local stack (devstack) and the simulators are dev tooling: not installed, run from the checkout.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.execve(str(PYTHON), [str(PYTHON), "-m", "devstack", "up", *args], {**os.environ, "PYTHONPATH": path})


def main() -> None:
    command, *rest = sys.argv[1:] or ["help"]
    if command == "up":
        up(rest)
    elif command == "test":
        test(rest)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
