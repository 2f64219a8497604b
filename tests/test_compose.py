"""The container deployment (docker-compose.yml, Dockerfile, .dockerignore, deploy/) against the code it runs.

No Docker engine is needed: the files are parsed and checked against the settings, entrypoints, search
attributes, rules and metrics they depend on, and the Temporal set-up script runs against a fake CLI.
``docker compose config`` runs too where the compose plugin is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from temporalio.common import SearchAttributeIndexedValueType

from api.app import create_app
from api.codec_server import create_codec_app
from api.metrics import ACK_SECONDS, WEBHOOKS
from core import metrics as worker_metrics
from core.constants import SEARCH_ATTRIBUTES
from core.production import API_NEEDS, MIGRATION_NEEDS, SUPPORT_NEEDS, WORKER_NEEDS, Needs
from core.settings import (
    ApiSettings,
    CodecServerSettings,
    MigrationSettings,
    Settings,
    WorkerRole,
    WorkerSettings,
)
from db.engine import async_url
from db.rules import parse_rules
from simulators.__main__ import build_config, parse_args

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
COMPOSE_DEALERS = DEPLOY / "dealers.compose.yaml"
EXAMPLE_DEALERS = ROOT / "config" / "dealers.example.yaml"
SETUP_SCRIPT = DEPLOY / "temporal" / "setup.sh"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
POSTGRES_INIT = DEPLOY / "postgres" / "init.sql"

HUB_SERVICES = ("migrate", "api", "worker-flows", "worker-warehouse", "codec-server")
WORKERS = {"worker-flows": "flows", "worker-warehouse": "warehouse"}  # service: role
IMAGES = {  # service -> image repository; the tag must be pinned
    "postgresql": "postgres",
    "temporal": "temporalio/auto-setup",
    "temporal-setup": "temporalio/admin-tools",
    "temporal-ui": "temporalio/ui",
    "prometheus": "prom/prometheus",
    "grafana": "grafana/grafana",
}
PUBLISHED = {  # service -> (host port, container port)
    "api": (8000, 8000),
    "temporal-ui": (8233, 8080),
    "simulators": (8100, 8100),
    "codec-server": (8234, 8234),
    "temporal": (7233, 7233),
    "prometheus": (9090, 9090),
    "grafana": (3000, 3000),
}
IGNORED = {".venv", "var", ".git", "tests", ".env", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
# Service keys of the Compose spec this file uses or may reasonably use. Compose rejects unknown keys, and no
# engine runs here to say so: a typo such as "depend_on" fails here instead.
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose", "volumes",
    "depends_on", "healthcheck", "restart", "stop_grace_period", "stop_signal", "user", "working_dir",
    "labels", "networks", "profiles", "init", "read_only", "tmpfs", "deploy", "secrets", "configs",
    "extra_hosts", "logging", "ulimits", "pull_policy", "container_name",
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


@pytest.fixture(scope="module")
def hub_env(compose: dict[str, Any]) -> dict[str, str]:
    """What every hub process is given."""
    env: dict[str, str] = compose["x-hub-env"]
    return env


@pytest.fixture(scope="module")
def all_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Every hub setting the file gives some process (each service merges its own over ``x-hub-env``)."""
    env: dict[str, str] = {}
    for name in HUB_SERVICES:
        env |= services[name]["environment"]
    return env


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each ``"IP:HOST:CONTAINER"`` entry."""
    result = []
    for entry in service.get("ports", []):
        assert isinstance(entry, str), f"use the short string form for ports: {entry!r}"
        parts = entry.split(":")
        assert len(parts) == 3, f"publish as IP:HOST:CONTAINER (bound to an address): {entry!r}"
        ip, host, container = parts
        result.append((ip, int(host), int(container)))
    return result


async def get_from_api(
    path: str, settings: Settings | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    """GET ``path`` from the API app in process (no lifespan: no Temporal or database needed)."""
    app = create_app(settings or Settings(_env_file=None))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api:8000"
    ) as client:
        return await client.get(path, headers=headers)


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's ``./`` bind mounts."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


# --- the compose file's shape ---------------------------------------------------------------------------


def test_compose_file_is_compose_spec_with_every_service(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert "version" not in compose, "the Compose spec has no version key"
    assert set(services) == set(IMAGES) | set(HUB_SERVICES) | {"simulators"}
    for name, service in services.items():
        unknown = set(service) - SERVICE_KEYS
        assert not unknown, f"{name}: unknown service keys {unknown}"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    for name in compose:
        assert name in {"name", "services", "volumes", "networks"} or name.startswith("x-"), name
    used_volumes = {
        entry.split(":")[0]
        for service in services.values()
        for entry in service.get("volumes", [])
        if not entry.startswith(("./", "/"))
    }
    assert used_volumes == set(compose["volumes"])


@pytest.mark.parametrize(("service", "repository"), sorted(IMAGES.items()))
def test_third_party_images_are_pinned(
    services: dict[str, dict[str, Any]], service: str, repository: str
) -> None:
    image = services[service]["image"]
    name, _, tag = image.rpartition(":")
    assert name == repository, f"{service} runs {image}, expected {repository}"
    assert tag and tag != "latest" and re.match(r"v?\d", tag), f"{service}: pin a version tag, not {image!r}"
    assert "build" not in services[service]


def test_temporal_tools_match_the_server_version(services: dict[str, dict[str, Any]]) -> None:
    server = services["temporal"]["image"].rpartition(":")[2]
    tools = services["temporal-setup"]["image"].rpartition(":")[2]
    assert tools.split("-")[0] == server


def test_hub_services_build_one_image_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in HUB_SERVICES}
    assert len(images) == 1
    assert not images.pop().endswith(":latest")
    stages = dockerfile_stages()
    for name in (*HUB_SERVICES, "simulators"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
        assert build["target"] == ("simulators" if name == "simulators" else "hub")
        assert build["target"] in stages
    assert services["simulators"]["image"] not in {services[name]["image"] for name in HUB_SERVICES}


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions, by stage name."""
    stages: dict[str, list[tuple[str, str]]] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            current = stages.setdefault(rest.split()[-1], [])
        current.append((keyword, rest))
    return stages


def test_the_product_image_leaves_the_dev_tooling_out() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "hub", "the default build (no --target) must be the product image"
    assert stages["hub"][0] == ("FROM", "base AS hub")
    copied = {rest.split()[0] for keyword, rest in [*stages["base"], *stages["hub"]] if keyword == "COPY"}
    assert not {"simulators", "devstack", "tests", "bench"} & copied
    assert ("FROM", "base AS simulators") in stages["simulators"]
    assert any(
        keyword == "COPY" and rest.split()[0] == "simulators" for keyword, rest in stages["simulators"]
    )
    packages = {
        pattern.rstrip("*") for pattern in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert not {"simulators", "devstack"} & packages


@pytest.mark.parametrize(("service", "ports"), sorted(PUBLISHED.items()))
def test_published_ports(services: dict[str, dict[str, Any]], service: str, ports: tuple[int, int]) -> None:
    assert [(host, container) for _, host, container in published_ports(services[service])] == [ports]


def test_published_ports_are_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for ip, host, _ in published_ports(service):
            assert ip == "127.0.0.1", f"{name} publishes {host} on {ip}"
        if name not in PUBLISHED:
            assert not service.get("ports"), f"{name} publishes ports the tests do not know about"


# --- the hub's processes ----------------------------------------------------------------------------------


async def test_api_command_serves_the_app(services: dict[str, dict[str, Any]]) -> None:
    command = services["api"]["command"]
    assert command[:3] == ["python", "-m", "api"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    assert (8000, port) in [(host, container) for _, host, container in published_ports(services["api"])]
    assert callable(importlib.import_module("api.__main__").main)

    healthcheck = " ".join(services["api"]["healthcheck"]["test"])
    health_path = re.search(rf"http://127\.0\.0\.1:{port}(/\w+)", healthcheck)
    assert health_path, healthcheck
    assert (await get_from_api(health_path.group(1))).status_code == 200


def test_each_worker_service_runs_one_role_of_the_worker_module(services: dict[str, dict[str, Any]]) -> None:
    for service, role in WORKERS.items():
        assert services[service]["command"] == ["python", "-m", "workers.main", "--role", role]
    assert set(WORKERS.values()) | {"all"} == set(get_args(WorkerRole))
    assert importlib.util.find_spec("workers.main") is not None
    assert callable(importlib.import_module("workers.main").main)
    assert pyproject()["project"]["scripts"]["hub-worker"] == "workers.main:main"


def test_migrate_runs_migrations_then_loads_the_compose_dealers(services: dict[str, dict[str, Any]]) -> None:
    command = services["migrate"]["command"]
    assert command[:2] == ["sh", "-c"]
    steps = [shlex.split(step) for step in command[2].split("&&")]
    assert steps[0] == ["python", "-m", "db.migrate"]
    assert callable(importlib.import_module("db.migrate").main)
    assert steps[1][:2] == ["hub-rules", "load"]
    assert pyproject()["project"]["scripts"]["hub-rules"] == "db.rules_cli:main"
    assert callable(importlib.import_module("db.rules_cli").main)
    assert steps[1][2] == "/app/deploy/dealers.compose.yaml"
    assert dockerfile_copies()["/app/deploy/dealers.compose.yaml"] == COMPOSE_DEALERS
    assert services["migrate"]["restart"] == "no"


def test_simulators_command_parses_and_points_at_compose_hosts(services: dict[str, dict[str, Any]]) -> None:
    command = [str(part) for part in services["simulators"]["command"]]
    assert command[:3] == ["python", "-m", "simulators"]
    args = parse_args(command[3:])
    config = build_config(args)
    assert (args.host, args.port) == ("0.0.0.0", 8100)
    assert config.public_base_url == "http://simulators:8100"
    assert config.api_url == "http://api:8000"


def test_hub_services_start_after_migrations_and_search_attributes(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("api", *WORKERS):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["temporal-setup"]["condition"] == "service_completed_successfully"
        assert depends["temporal"]["condition"] in {"service_healthy", "service_started"}
    assert services["migrate"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgresql"]["healthcheck"]["test"])
    assert services["temporal-setup"]["restart"] == "no"


async def test_the_ui_decodes_through_the_codec_server_from_the_browser(
    services: dict[str, dict[str, Any]], compose_settings: Settings
) -> None:
    command = services["codec-server"]["command"]
    assert command[:3] == ["uvicorn", "--factory", "api.codec_server:app"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    # The browser calls the endpoint: it must be the published address, and the UI's origin allowed.
    endpoint = urlsplit(services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"])
    assert [(ip, host) for ip, host, _ in published_ports(services["codec-server"])] == [
        (endpoint.hostname, endpoint.port)
    ]
    assert (endpoint.port, port) in [(h, c) for _, h, c in published_ports(services["codec-server"])]
    ((ui_ip, ui_port, _),) = published_ports(services["temporal-ui"])
    assert f"http://{ui_ip}:{ui_port}" in compose_settings.codec_server_cors_origins
    module, _, attribute = command[2].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    app = create_codec_app(compose_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec") as client:
        healthcheck = " ".join(services["codec-server"]["healthcheck"]["test"])
        health_path = re.search(rf"http://127\.0\.0\.1:{port}(/\w+)", healthcheck)
        assert health_path, healthcheck
        assert (await client.get(health_path.group(1))).status_code == 200


def test_worker_healthcheck_uses_the_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    for service in WORKERS:
        healthcheck = " ".join(services[service]["healthcheck"]["test"])
        port = services[service]["environment"]["HUB_WORKER_METRICS_PORT"]
        assert f"127.0.0.1:{port}/metrics" in healthcheck


# --- settings ---------------------------------------------------------------------------------------------


def test_every_hub_variable_is_a_settings_field(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for variable in service.get("environment", {}):
            if variable.startswith("HUB_"):
                field = variable.removeprefix("HUB_").lower()
                assert field in Settings.model_fields, f"{name}: {variable} is not a setting"


# Each hub service's process, as core/production.py names what it uses.
PROCESSES: dict[str, tuple[type[Settings], dict[str, Any], Needs]] = {
    "api": (ApiSettings, {}, API_NEEDS),
    "worker-flows": (WorkerSettings, {"worker_role": "flows"}, WORKER_NEEDS["flows"]),
    "worker-warehouse": (WorkerSettings, {"worker_role": "warehouse"}, WORKER_NEEDS["warehouse"]),
    "migrate": (MigrationSettings, {}, MIGRATION_NEEDS),
    "codec-server": (CodecServerSettings, {}, SUPPORT_NEEDS),
}


def secret_variables(needs: Needs) -> set[str]:
    held = needs.secrets | needs.dealer_secrets | needs.identifiers | needs.optional
    return {f"HUB_{name.upper()}" for name in held}


def test_each_hub_service_is_given_the_secrets_its_process_uses_and_no_other(
    services: dict[str, dict[str, Any]], hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As each Kubernetes pod: the API, which faces the internet, holds no partner's credentials; each
    worker holds its role's partners' only. Every one shares where everything is (x-hub-env)."""
    every_secret = set().union(*(secret_variables(needs) for _, _, needs in PROCESSES.values()))
    assert set(PROCESSES) == set(HUB_SERVICES)
    for name, (kind, arguments, needs) in PROCESSES.items():
        environment = services[name]["environment"]
        assert hub_env.items() <= environment.items(), name
        assert set(environment) & every_secret <= secret_variables(needs), name
        if not needs.mail:
            assert not [variable for variable in environment if variable.startswith("HUB_SMTP_")], name
        use_environment(monkeypatch, environment)
        assert kind(_env_file=None, **arguments).environment == "local", name
    # The placeholders the file gives, where they are used.
    assert "HUB_DEALER_API_KEYS" in services["worker-flows"]["environment"]
    assert {"HUB_DEALER_WEBHOOK_SECRETS", "HUB_METRICS_TOKEN"} <= set(services["api"]["environment"])
    assert "HUB_SMTP_HOST" in services["worker-flows"]["environment"]


# In production every process checks every partner's address (core/production.py): one it lacks would be
# the local default, plain http, and refused. So they are in what every hub service shares.
PARTNER_ADDRESSES = (
    "HUB_ZOHO_API_BASE_URL",
    "HUB_ZOHO_ACCOUNTS_URL",
    "HUB_VTEX_API_BASE_URL",
    "HUB_VTEX_HOOK_URL",
    "HUB_EVENT_SUBSCRIBERS",
)


def test_every_hub_service_shares_the_partners_addresses(hub_env: dict[str, str]) -> None:
    assert set(PARTNER_ADDRESSES) <= set(hub_env)


@pytest.fixture
def compose_settings(monkeypatch: pytest.MonkeyPatch, all_env: dict[str, str]) -> Settings:
    """The settings of every hub setting the file gives."""
    use_environment(monkeypatch, all_env)
    return Settings(_env_file=None)


def use_environment(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    """The hub settings of this process: ``environment``'s, none of this machine's."""
    for variable in list(os.environ):
        if variable.startswith("HUB_"):
            monkeypatch.delenv(variable)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, str(value))


def test_compose_environment_is_valid_local_settings(compose_settings: Settings) -> None:
    settings = compose_settings
    assert settings.environment == "local"
    assert settings.temporal_address == "temporal:7233"
    assert settings.event_subscribers == ["http://simulators:8100/events/portal"]
    dealer_ids = {dealer.id for dealer in parse_rules(COMPOSE_DEALERS).dealers}
    assert set(settings.dealer_api_keys) == dealer_ids
    assert set(settings.dealer_webhook_secrets) == dealer_ids
    assert async_url(settings.database_url).startswith("postgresql+psycopg://")


def test_compose_environment_holds_no_production_secrets(
    compose_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="zoho_webhook_secret is a local placeholder"):
        ApiSettings(_env_file=None)
    with pytest.raises(ValidationError, match="zoho_client_secret is a local placeholder"):
        WorkerSettings(_env_file=None, worker_role="flows")
    # Even with every secret set for real, the file's dealer keys and simulator URLs are refused.
    for name in ("ZOHO_WEBHOOK_SECRET", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN", "READ_API_TOKEN",
                 "VTEX_APP_TOKEN", "VTEX_HOOK_SECRET"):  # fmt: skip
        monkeypatch.setenv(f"HUB_{name}", f"real-{name.lower()}")
    monkeypatch.setenv("HUB_EVENT_SIGNING_SECRET", "whsec_cHJvZHVjdGlvbi1rZXk=")
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None)  # what every process refuses, the hub command included
    message = str(refused.value)
    assert "dealer_api_keys[dealer-sp-centro] is a local placeholder" in message
    assert "dealer_webhook_secrets[dealer-sp-centro] is a local placeholder" in message
    for name in ("zoho_api_base_url", "event_subscribers[0]", "vtex_api_base_url", "vtex_hook_url"):
        assert f"{name}: http://" in message and "plain http is refused" in message, name


def test_hub_environment_points_at_compose_services(
    services: dict[str, dict[str, Any]], hub_env: dict[str, str], all_env: dict[str, str]
) -> None:
    def container_ports(name: str) -> set[int]:
        return {container for _, _, container in published_ports(services[name])}

    host, _, port = hub_env["HUB_TEMPORAL_ADDRESS"].partition(":")
    assert host == "temporal" and int(port) in container_ports("temporal")
    assert hub_env["HUB_TEMPORAL_NAMESPACE"] == services["temporal"]["environment"]["DEFAULT_NAMESPACE"]
    for variable in ("HUB_ZOHO_API_BASE_URL", "HUB_ZOHO_ACCOUNTS_URL", "HUB_EVENT_SUBSCRIBERS"):
        url = urlsplit(all_env[variable])
        assert url.hostname == "simulators" and url.port in container_ports("simulators"), variable
    assert urlsplit(all_env["HUB_ZOHO_API_BASE_URL"]).path == "/zoho"
    assert urlsplit(all_env["HUB_EVENT_SUBSCRIBERS"]).path.startswith("/events/")


def test_portal_database_is_created_on_the_postgresql_service(
    services: dict[str, dict[str, Any]], hub_env: dict[str, str]
) -> None:
    url = make_url(hub_env["HUB_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port) == ("postgresql", 5432)
    init = POSTGRES_INIT.read_text(encoding="utf-8")
    assert re.search(rf"CREATE ROLE {url.username} WITH LOGIN PASSWORD '{url.password}'", init)
    assert re.search(rf"CREATE DATABASE {url.database} OWNER {url.username}", init)
    mounts = bind_mounts(services["postgresql"])
    assert any(
        target.startswith("/docker-entrypoint-initdb.d/") and source == POSTGRES_INIT
        for target, source in mounts.items()
    )


def test_temporal_uses_the_postgresql_service(services: dict[str, dict[str, Any]]) -> None:
    temporal = services["temporal"]["environment"]
    postgres = services["postgresql"]["environment"]
    assert temporal["DB"] == "postgres12"
    assert temporal["POSTGRES_SEEDS"] == "postgresql"
    assert str(temporal["DB_PORT"]) == "5432"
    assert temporal["POSTGRES_USER"] == postgres["POSTGRES_USER"]
    assert temporal["POSTGRES_PWD"] == postgres["POSTGRES_PASSWORD"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


# --- Temporal search attributes ---------------------------------------------------------------------------


def test_temporal_setup_registers_the_search_attributes(
    services: dict[str, dict[str, Any]], hub_env: dict[str, str]
) -> None:
    setup = services["temporal-setup"]
    assert setup["command"] == [key.name for key in SEARCH_ATTRIBUTES]
    assert all(key.indexed_value_type == SearchAttributeIndexedValueType.KEYWORD for key in SEARCH_ATTRIBUTES)
    assert "--type Keyword" in SETUP_SCRIPT.read_text(encoding="utf-8")
    assert setup["entrypoint"][0] == "/bin/sh"
    assert bind_mounts(setup)[setup["entrypoint"][1]] == SETUP_SCRIPT
    assert setup["environment"]["TEMPORAL_ADDRESS"] == hub_env["HUB_TEMPORAL_ADDRESS"]
    assert setup["environment"]["NAMESPACE"] == hub_env["HUB_TEMPORAL_NAMESPACE"]


FAKE_TEMPORAL = """\
import json, os, sys
from pathlib import Path

state_path = Path(os.environ["FAKE_TEMPORAL_STATE"])
state = json.loads(state_path.read_text())
args = sys.argv[1:]
state["calls"].append(args)


def option(name):
    return args[args.index(name) + 1]


def finish(code, out=""):
    state_path.write_text(json.dumps(state))
    if out:
        print(out)
    sys.exit(code)


assert option("--address") == "temporal:7233", args
command = args[1:3]
if command == ["cluster", "health"]:
    finish(0, state["health"])
if command == ["namespace", "describe"]:
    if args[-1] in state["namespaces"]:
        finish(0, "NamespaceInfo.Name " + args[-1])
    finish(1, "Error: namespace not found")
if command == ["namespace", "create"]:
    state["namespaces"][args[-1]] = {}
    finish(0)
attributes = state["namespaces"].get(option("--namespace"))
if attributes is None:
    finish(1, "Error: namespace not found")
if command == ["search-attribute", "list"]:
    rows = {"WorkflowType": "Keyword", "BuildIds": "KeywordList", **attributes}
    finish(0, "\\n".join(f"  {name}  {kind}" for name, kind in rows.items()))
if command == ["search-attribute", "create"]:
    name = option("--name")
    if name in attributes:
        finish(1, f"Error: search attribute {name} already exists")
    attributes[name] = option("--type")
    finish(1 if state.get("create_reports_already_exists") else 0)
finish(2, f"unexpected command {args}")
"""


SetupRun = tuple[subprocess.CompletedProcess[str], dict[str, Any]]


def run_setup(tmp_path: Path, state: dict[str, Any]) -> SetupRun:
    """Run deploy/temporal/setup.sh with a fake ``temporal`` CLI; returns the process and the final state."""
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "temporal"
    fake.write_text(f"#!{sys.executable}\n{FAKE_TEMPORAL}", encoding="utf-8")
    fake.chmod(0o755)
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps({"calls": [], **state}), encoding="utf-8")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_TEMPORAL_STATE": str(state_path),
        "TEMPORAL_ADDRESS": "temporal:7233",
        "NAMESPACE": "default",
        "SETUP_ATTEMPTS": "5",
        "SETUP_INTERVAL_SECONDS": "0",
        "SETTLE_SECONDS": "0",
    }
    names = [key.name for key in SEARCH_ATTRIBUTES]
    process = subprocess.run(
        ["sh", str(SETUP_SCRIPT), *names], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return process, json.loads(state_path.read_text(encoding="utf-8"))


def creates(state: dict[str, Any]) -> list[list[str]]:
    return [call for call in state["calls"] if call[1:3] == ["search-attribute", "create"]]


def test_setup_script_registers_keyword_attributes_once(tmp_path: Path) -> None:
    expected = {key.name: "Keyword" for key in SEARCH_ATTRIBUTES}
    first, state = run_setup(tmp_path, {"health": "SERVING", "namespaces": {"default": {}}})
    assert first.returncode == 0, first.stderr + first.stdout
    assert state["namespaces"]["default"] == expected
    assert len(creates(state)) == len(expected)

    again, state = run_setup(tmp_path, {"health": "SERVING", "namespaces": state["namespaces"]})
    assert again.returncode == 0, again.stderr + again.stdout
    assert creates(state) == []
    assert "already registered" in again.stdout


def test_setup_script_tolerates_already_exists(tmp_path: Path) -> None:
    process, state = run_setup(
        tmp_path,
        {"health": "SERVING", "namespaces": {"default": {}}, "create_reports_already_exists": True},
    )
    assert process.returncode == 0, process.stderr + process.stdout
    assert set(state["namespaces"]["default"]) == {key.name for key in SEARCH_ATTRIBUTES}


def test_setup_script_creates_a_missing_namespace(tmp_path: Path) -> None:
    process, state = run_setup(tmp_path, {"health": "SERVING", "namespaces": {}})
    assert process.returncode == 0, process.stderr + process.stdout
    assert set(state["namespaces"]["default"]) == {key.name for key in SEARCH_ATTRIBUTES}
    create = next(call for call in state["calls"] if call[1:3] == ["namespace", "create"])
    assert create[create.index("--retention") + 1] == "168h"


def test_setup_script_fails_when_temporal_never_serves(tmp_path: Path) -> None:
    process, state = run_setup(tmp_path, {"health": "NOT_SERVING", "namespaces": {"default": {}}})
    assert process.returncode != 0
    assert "gave up waiting for the Temporal frontend" in process.stderr
    assert creates(state) == []


# --- dealers and routing rules ----------------------------------------------------------------------------


def test_compose_dealers_are_the_example_dealers_on_the_simulators_host() -> None:
    example = parse_rules(EXAMPLE_DEALERS)
    deployed = parse_rules(COMPOSE_DEALERS)
    assert [d.id for d in deployed.dealers] == [d.id for d in example.dealers]
    for ours, theirs in zip(deployed.dealers, example.dealers, strict=True):
        url = urlsplit(ours.crm.url)
        assert (url.hostname, url.port) == ("simulators", 8100), ours.crm.url
        crm = theirs.crm.model_copy(update={"url": theirs.crm.url.replace("127.0.0.1", "simulators")})
        expected = theirs.model_copy(update={"crm": crm})
        assert ours == expected


# --- metrics ----------------------------------------------------------------------------------------------


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in config["scrape_configs"]}


def job_for(target: str) -> dict[str, Any]:
    for job in scrape_jobs().values():
        if any(target in group["targets"] for group in job["static_configs"]):
            return job
    raise AssertionError(f"Prometheus does not scrape {target}")


async def test_prometheus_scrapes_the_api_metrics_path(services: dict[str, dict[str, Any]]) -> None:
    job = job_for("api:8000")
    path = job.get("metrics_path", "/metrics")
    # Prometheus sends, from a mounted file, the token the compose API wants.
    authorization = job["authorization"]
    credentials = PROMETHEUS_CONFIG.parent / authorization["credentials_file"]
    assert bind_mounts(services["prometheus"])[f"/etc/prometheus/{credentials.name}"] == credentials
    token = credentials.read_text(encoding="utf-8").strip()
    assert token == services["api"]["environment"]["HUB_METRICS_TOKEN"]
    settings = Settings(_env_file=None, metrics_token=token)
    assert (await get_from_api(path, settings)).status_code == 401
    response = await get_from_api(path, settings, {"Authorization": f"{authorization['type']} {token}"})
    assert response.status_code == 200
    assert "hub_webhooks_total" in response.text
    assert "hub_webhook_ack_seconds" in response.text


def test_prometheus_scrapes_the_worker_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    for service in WORKERS:
        environment = services[service]["environment"]
        job_for(f"{service}:{environment['HUB_WORKER_METRICS_PORT']}")
        # Bound to all interfaces: 127.0.0.1 inside the worker's container is unreachable from Prometheus.
        assert environment["HUB_WORKER_METRICS_HOST"] == "0.0.0.0"
        assert (
            int(environment["HUB_WORKER_METRICS_PORT"])
            == Settings.model_fields["worker_metrics_port"].default
        )
    assert bind_mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG


def test_prometheus_finds_its_alert_rules(services: dict[str, dict[str, Any]]) -> None:
    rule_files = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))["rule_files"]
    assert rule_files
    mounts = bind_mounts(services["prometheus"])
    for name in rule_files:  # relative to the configuration file, as Prometheus reads them
        assert mounts[f"/etc/prometheus/{name}"] == PROMETHEUS_CONFIG.parent / name


def test_grafana_provisions_prometheus_and_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    mounts = bind_mounts(services["grafana"])
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == GRAFANA / "provisioning"
    datasource_file = provisioning / "datasources" / "prometheus.yml"
    datasources = yaml.safe_load(datasource_file.read_text(encoding="utf-8"))
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "integrations-hub.yml").read_text(encoding="utf-8")
    )
    dashboards_dir = mounts[providers["providers"][0]["options"]["path"]]
    assert dashboards_dir == GRAFANA / "dashboards"

    dashboard = json.loads((dashboards_dir / "integrations-hub.json").read_text(encoding="utf-8"))
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert {panel["datasource"]["uid"] for panel in panels} == {datasource["uid"]}
    queries = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    (webhooks,) = WEBHOOKS.describe()
    (ack,) = ACK_SECONDS.describe()
    assert f"sum by (outcome) (rate({webhooks.name}_total" in queries
    assert "outcome" in WEBHOOKS._labelnames
    for quantile in ("0.50", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate({ack.name}_bucket" in queries
    assert "temporal_worker_task_slots_used" in queries
    assert "temporal_activity_execution_latency_bucket" in queries
    # Every metric of the worker's side is on the dashboard.
    for collector in set(worker_metrics.REGISTRY._collector_to_names) - {worker_metrics.PROCESS}:
        for family in collector.describe():
            assert family.name in queries, f"{family.name} is on no panel"


# --- Dockerfile -------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_copies() -> dict[str, Path]:
    """Image path -> source path of each COPY, relative to WORKDIR /app."""
    copies = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            source, destination = rest.split()
            target = destination if destination.startswith("/") else f"/app/{destination.removeprefix('./')}"
            copies[target.rstrip("/") or "/app"] = ROOT / source
    return copies


def test_dockerfile_installs_the_project_without_dev_extras() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim AS base")
    assert ("WORKDIR", "/app") in instructions
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip install --no-cache-dir ." in runs
    assert "[dev]" not in runs
    copies = dockerfile_copies()
    for source in copies.values():
        assert source.exists(), source
    assert copies["/app"] == ROOT / "pyproject.toml"
    packages = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        package = pattern.rstrip("*")
        assert copies.get(f"/app/{package}") == ROOT / package, f"the Dockerfile does not copy {package}/"
    assert copies["/app/config"] == ROOT / "config"


def test_the_image_holds_every_path_dbt_reads() -> None:
    """dbt build in the image runs what it runs locally: its models, macros and singular tests (the
    quarantine checks), and the project and profile files."""
    project = yaml.safe_load((ROOT / "dbt" / "dbt_project.yml").read_text(encoding="utf-8"))
    copies = dockerfile_copies()
    folders = [folder for key, value in project.items() if key.endswith("-paths") for folder in value]
    assert {"models", "macros", "tests"} <= set(folders)
    for folder in folders:
        if (ROOT / "dbt" / folder).exists():
            assert copies.get(f"/app/dbt/{folder}") == ROOT / "dbt" / folder, f"the image lacks dbt/{folder}"
    for name in ("dbt_project.yml", "profiles.yml"):
        assert copies.get(f"/app/dbt/{name}") == ROOT / "dbt" / name


def test_dockerfile_runs_as_non_root_without_secrets() -> None:
    instructions = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image must switch to an unprivileged user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in instructions[last_user:])
    for keyword, rest in instructions:
        if keyword in {"ENV", "ARG"}:
            assert not re.search(r"SECRET|TOKEN|PASSWORD|API_KEY", rest, re.IGNORECASE), rest
    exposed = {int(port) for keyword, rest in instructions if keyword == "EXPOSE" for port in rest.split()}
    assert {8000, 8100, 8234, Settings.model_fields["worker_metrics_port"].default} <= exposed


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not IGNORED - patterns, f"not ignored: {IGNORED - patterns}"
    assert any("__pycache__" in pattern for pattern in patterns)
    for source in dockerfile_copies().values():
        first = source.relative_to(ROOT).parts[0]
        assert first not in patterns, f"{first} is copied by the Dockerfile but ignored by .dockerignore"


# --- docker compose itself, where installed ---------------------------------------------------------------


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker client is not installed")
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
