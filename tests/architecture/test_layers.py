"""The packages' arrows point down, and each process loads only what it serves.

A process that imports a module it does not use pays for it in every replica: BigQuery's client and
pyarrow alone are most of an API process's memory. These tests read the imports of every module, and
import the entry points in a fresh interpreter to see what they load.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lowest first. A package may import its own modules and those of lower layers, never a higher layer or
# another package of its own layer.
LAYERS = [
    {"core"},
    {"contracts"},
    {"db", "clients"},
    {"warehouse"},
    {"activities"},
    {"workflows"},
    {"workers", "api", "cli"},
    {"devstack"},
]
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}
HEAVY = ["activities", "google.cloud.bigquery", "pyarrow", "zeep", "dbt"]


def project_imports(path: Path) -> list[tuple[int, str]]:
    """Each import of a project package in the file (module level or inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [(node.lineno, name) for name in names if name.split(".")[0] in LAYER_OF]
    return found


def test_every_arrow_between_packages_points_down() -> None:
    wrong = []
    for package, level in LAYER_OF.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module in project_imports(path):
                target = module.split(".")[0]
                if target != package and LAYER_OF[target] >= level:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def loaded_by(statement: str, modules: list[str] = HEAVY) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``statement``."""
    probe = f"import sys, json\n{statement}\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return list(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "statement",
    [
        # The whole API: webhook routes, status reads, and the warehouse reads (their client opens at the
        # first read); and the contracts the API starts workflows through.
        "from api.app import create_app; create_app()",
        "import contracts.leads, contracts.opportunities, contracts.orders, contracts.dbt_build",
    ],
)
def test_the_api_loads_no_activities_bigquery_pyarrow_zeep_or_dbt(statement: str) -> None:
    assert loaded_by(statement) == []


def test_the_api_loads_no_http_client() -> None:
    # It calls no partner: httpx (and the command-line extras it imports when installed) is ~7 MiB a process.
    assert loaded_by("from api.app import create_app; create_app()", ["httpx"]) == []


@pytest.mark.parametrize(
    "statement",
    [
        "import api.__main__",
        "from api.app import create_app; create_app()",
        "import workers.main, workers.flows",
    ],
)
def test_the_api_and_the_flows_worker_load_no_grpc(statement: str) -> None:
    # temporalio speaks to the server through its own core; grpcio, there for BigQuery's libraries,
    # would cost each of these processes ~15 MiB for temporalio's unused stubs (core/lean_imports.py).
    assert loaded_by(statement, ["grpc"]) == []


def test_the_workers_load_httpx_without_its_command_line_client() -> None:
    # httpx imports click, pygments and rich for its CLI whenever they are installed (rich comes with
    # the test tools): ~5 MiB a worker process for a command nothing runs (core/lean_imports.py).
    for role in ("flows", "warehouse"):
        statement = f"import workers.main; workers.main.role_modules({role!r})"
        assert loaded_by(statement, ["httpx", "rich", "pygments"]) == ["httpx"], role


def test_holiday_calendars_load_only_where_the_stored_years_do_not_answer() -> None:
    # Brazil's calendar costs a process ~17 MiB: the API does without it, and so does the worker routing
    # leads, asking the holidays resolved when the rules were loaded (db.rules.HoursConfig.stored).
    assert loaded_by("from api.app import create_app; create_app()", ["holidays"]) == []
    stored = (
        "from datetime import date; from db.rules import HoursConfig; "
        "print(HoursConfig(weekly={'mon': ['08:00-18:00']}, holidays='BR-SP').stored(date(2026, 12, 5)))"
    )
    calendar = subprocess.run(
        [sys.executable, "-c", stored], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    parse = "from core.business_hours import from_config; from datetime import date"
    opens = f"{parse}; h = from_config({calendar})"
    assert loaded_by(f"{opens}; h.intervals_on(date(2026, 11, 20))", ["holidays"]) == []
    assert loaded_by(f"{opens}; h.intervals_on(date(2031, 12, 25))", ["holidays"]) == []
    # A day beyond the stored years, or rules stored without them, ask the package.
    assert loaded_by(f"{opens}; h.intervals_on(date(2032, 1, 1))", ["holidays"]) == ["holidays"]
    earlier = "{'weekly': {'mon': ['08:00-18:00']}, 'holidays': 'BR-SP'}"
    assert loaded_by(f"{parse}; from_config({earlier})", ["holidays"]) == ["holidays"]


BIGQUERY_LIBRARIES = ("google.cloud.bigquery", "google.cloud import bigquery")


def test_the_warehouse_libraries_load_without_pandas() -> None:
    # dbt-bigquery installs pandas, and BigQuery's libraries import it when it is there: ~40 MiB a
    # process for DataFrames the hub never makes. The hub takes them from warehouse.libraries only,
    # which loads them without it.
    direct = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in LAYER_OF
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "warehouse" / "libraries.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if any(
            name.startswith(("google.cloud.bigquery", "google.cloud import bigquery"))
            for name in imported(node)
        )
    ]
    assert not direct, "BigQuery's libraries imported around warehouse.libraries:\n" + "\n".join(direct)
    # pyarrow asks for pandas the first time it converts Python values (rows landed as record batches).
    landing = "import pyarrow; pyarrow.RecordBatch.from_pylist([{'order_id': '1'}])"
    warehouse_worker = f"import workers.main, workers.warehouse, warehouse.reads; {landing}"
    assert loaded_by(warehouse_worker, ["google.cloud.bigquery", "pandas"]) == ["google.cloud.bigquery"]


def imported(node: ast.AST) -> list[str]:
    """The modules an import statement names (``from google.cloud import bigquery`` as such)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module] + [f"{node.module} import {alias.name}" for alias in node.names]
    return []


def test_the_flows_worker_loads_no_warehouse_and_zeep_only_for_a_soap_dealer() -> None:
    # zeep and lxml (~9 MiB) load with the first SOAP dealer's call (tests/clients/test_dealer_crm.py
    # makes such calls), not with the adapter the worker builds at start.
    built = "from clients.dealer_crm import SoapDealerCrm; SoapDealerCrm(10, {})"
    loaded = loaded_by(f"import workers.main, workers.flows; {built}")
    assert "activities" in loaded  # its own: leads and opportunities
    assert not {"google.cloud.bigquery", "pyarrow", "dbt", "zeep"} & set(loaded)


def test_every_role_module_can_prepare_and_open_its_workers() -> None:
    import inspect

    from workers.main import ROLE_MODULES, role_modules

    for role in ROLE_MODULES:
        for module in role_modules(role):  # type: ignore[arg-type]
            assert inspect.iscoroutinefunction(module.prepare), module.__name__
            assert callable(module.open_workers), module.__name__


def test_the_roles_register_every_workflow_under_its_class_name() -> None:
    from temporalio import workflow

    from workers import flows, warehouse
    from workflows.replay import WORKFLOWS

    assert sorted(cls.__name__ for cls in (*flows.WORKFLOWS, *warehouse.WORKFLOWS)) == sorted(
        cls.__name__ for cls in WORKFLOWS
    )
    for cls in WORKFLOWS:
        assert workflow._Definition.must_from_class(cls).name == cls.__name__
