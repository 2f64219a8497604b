"""The BigQuery emulator (PyPI ``bqemulator``) of the local stack and the tests.

bqemulator loads DuckDB's ``spatial`` extension at start and would download it; machines without
internet install it from the ``duckdb-extension-spatial`` wheel instead, into the extension folder
under the ``HOME`` the emulator runs with.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

PROJECT = "local-proj"


def _binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "bqemulator"
    found = str(candidate) if candidate.exists() else shutil.which("bqemulator")
    if not found:
        raise RuntimeError("bqemulator is not installed: install the project's [local] extra")
    return found


def prepare_home(home: Path) -> None:
    """Install the spatial extension from its wheel into ``home``'s DuckDB extension folder (offline)."""
    import duckdb
    import duckdb_extension_spatial

    wheel_dir = Path(duckdb_extension_spatial.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    extension = next(wheel_dir.glob("spatial.duckdb_extension*"), None)
    if extension is None:
        raise RuntimeError(f"no spatial extension for DuckDB {duckdb.__version__} in {wheel_dir}")
    target = home / ".duckdb" / "extensions"
    target.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(config={"extension_directory": str(target)}) as connection:
        connection.execute(f"INSTALL '{extension}'")


def environment(home: Path) -> dict[str, str]:
    """What the emulator's environment needs on top: its own HOME (where the extension lies), no downloads,
    and the project's root on the path (the dev tooling is not installed with the project)."""
    return {"HOME": str(home), "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false", "PYTHONPATH": with_project_root()}


def with_project_root() -> str:
    """``PYTHONPATH`` with the project's root first: ``devstack`` and ``simulators`` are dev tooling,
    left out of the installed project and its image, and run from the checkout."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))


def command(
    rest_port: int, grpc_port: int, data_dir: Path | None = None, project: str = PROJECT
) -> list[str]:
    """The emulator's command line; ``data_dir`` keeps the data between runs, None keeps it in memory."""
    storage = ["--persistent", "--data-dir", str(data_dir)] if data_dir else ["--ephemeral"]
    _binary()  # the [local] extra is installed
    # Through our launcher, which keeps the emulator's DuckDB connection on one thread.
    return [
        sys.executable, "-m", "devstack.bqemulator_main", "start",
        "--rest-host", "127.0.0.1", "--rest-port", str(rest_port),
        "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--project", project, *storage,
    ]  # fmt: skip
