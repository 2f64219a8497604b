"""The Kubernetes manifests (deploy/k8s) against the Kubernetes schemas, the compose file and the code.

No cluster and no kustomize binary: every manifest is validated offline against the schemas
kubernetes-validate bundles, and the production overlay is rendered by the small loader below, which
applies the kustomization fields the overlay uses and refuses any other. The rendered objects are then
checked against docker-compose.yml (commands, ports, probes, grace periods), the settings (every variable
is one, or one of Temporal's, OpenTelemetry's or Google's), the API and codec apps (the paths the probes
and the scrapes use) and the Dockerfile (its user and its writable folder).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shlex
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

import core.settings
from api.app import create_app
from api.codec_server import create_codec_app
from api.deps import get_sessions, get_temporal
from api.routes.health import CHECK_TIMEOUT_SECONDS
from core.outbound import check_url
from core.production import (
    API_NEEDS,
    EVERY_SECRET,
    LOCAL_IDENTIFIERS,
    MIGRATION_NEEDS,
    WORKER_NEEDS,
    Needs,
    api_tls_problem,
)
from core.settings import ApiSettings, CodecServerSettings, MigrationSettings, Settings, WorkerSettings
from core.temporal import tls_config
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from tests.test_compose import (
    COMPOSE_FILE,
    ROOT,
    dockerfile_instructions,
    get_from_api,
    published_ports,
    scrape_jobs,
)
from warehouse.dbt_child import STOP_GRACE_SECONDS

K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "production"
README = ROOT / "README.md"
KUBERNETES_VERSION = "1.33.0"
IMAGE = "integrations-hub"  # the base's image name, which the overlay's `images` replaces
# Compose service -> Deployment running the same process.
DEPLOYMENTS = {
    "api": "hub-api",
    "worker-flows": "hub-worker-flows",
    "worker-warehouse": "hub-worker-warehouse",
    "codec-server": "hub-codec-server",
}
WORKER_DEPLOYMENTS = ("hub-worker-flows", "hub-worker-warehouse")
# Files whoever deploys writes, and what the tests read in their place.
USER_FILES = {"secrets.env": "secrets.env.example"}
# What the loader applies; a kustomization using anything else fails rather than render wrongly.
KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches",
    "configMapGenerator", "secretGenerator",
}  # fmt: skip
GENERATOR_FIELDS = {"name", "behavior", "envs", "literals"}
CLUSTER_SCOPED = {"Namespace"}
# Variables that are no HUB_ setting but are read by what the hub uses: Temporal's client configuration
# (temporalio.envconfig), OpenTelemetry's SDK (OTEL_*) and Google's client libraries.
STANDARD_VARIABLES = {
    "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS", "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE", "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_KEY_DATA", "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA", "TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
}  # fmt: skip
STANDARD_PREFIXES = ("OTEL_",)
# Resident memory README's Benchmark section reports per process, in MiB: (steady, highest). The codec
# server has no figure there; it held 87 MiB idle when these manifests were written.
MEASURED_MIB = {
    "hub-api": (126, 130),
    "hub-worker-flows": (263, 481),
    "hub-worker-warehouse": (411, 516),
}
CODEC_SERVER_IDLE_MIB = 87
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
COMMENTED_VARIABLE = re.compile(r"^#\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)

Object = dict[str, Any]


# --- the loader: the kustomize fields the overlay uses ----------------------------------------------------


@dataclass
class Build:
    objects: list[Object] = field(default_factory=list)
    generated: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) a generator made


def documents(path: Path) -> list[Object]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]


def kustomization(directory: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: the test's loader does not apply {sorted(unknown)}"
    assert spec["kind"] == "Kustomization"
    return spec


def build(directory: Path) -> Build:
    """The objects of a kustomization, generated names not yet suffixed (that happens once, at the top)."""
    spec = kustomization(directory)
    result = Build()
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            part = build(path)
            result.objects += part.objects
            result.generated |= part.generated
        else:
            result.objects += documents(path)
    for generator in spec.get("configMapGenerator", []):
        generate(result, "ConfigMap", generator, directory)
    for generator in spec.get("secretGenerator", []):
        generate(result, "Secret", generator, directory)
    for patch in spec.get("patches", []):
        assert set(patch) == {"path"}, f"only patch files are applied here: {patch}"
        for document in documents(directory / patch["path"]):
            merge(target_of(result.objects, document), document)
    for entry in spec.get("replicas", []):
        named(result.objects, "Deployment", entry["name"])["spec"]["replicas"] = entry["count"]
    for image in spec.get("images", []):
        assert set(image) <= {"name", "newName", "newTag"}, image
        set_image(result.objects, image)
    if "namespace" in spec:
        for obj in result.objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    return result


def render(directory: Path) -> list[Object]:
    """Build, then name each generated object after its content and point the pods at the new names, as
    kustomize does so that a changed setting rolls the Deployments."""
    result = build(directory)
    renamed = {}
    for obj in result.objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in result.generated:
            digest = hashlib.sha256(json.dumps(obj["data"], sort_keys=True).encode()).hexdigest()[:10]
            obj["metadata"]["name"] = renamed[key] = f"{key[1]}-{digest}"
    for pod in pod_specs(result.objects):
        for reference in references(pod):
            reference.name_holder[reference.field] = renamed.get(
                (reference.kind, reference.name), reference.name
            )
    return result.objects


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as kustomize reads them: the value taken as it is, comments and blank lines skipped."""
    pairs: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: {key} has no '=' (kustomize would read the deployer's environment)"
        assert ENV_NAME.fullmatch(key), f"{path.name}: {key!r} is no variable name"
        assert key not in pairs, f"{path.name}: {key} twice"
        pairs[key] = value
    return pairs


def generator_file(directory: Path, name: str) -> Path:
    return directory / USER_FILES.get(name, name)


def generate(result: Build, kind: str, generator: dict[str, Any], directory: Path) -> None:
    assert set(generator) <= GENERATOR_FIELDS, generator
    data: dict[str, str] = {}
    for name in generator.get("envs", []):
        data |= env_file(generator_file(directory, name))
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    if kind == "Secret":
        data = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    name = generator["name"]
    if generator.get("behavior", "create") == "merge":
        assert (kind, name) in result.generated, (
            f"{kind} {name}: merge needs a generated object to merge into"
        )
        named(result.objects, kind, name)["data"].update(data)
        return
    assert not any(o["kind"] == kind and o["metadata"]["name"] == name for o in result.objects), name
    generated: Object = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "data": data}
    if kind == "Secret":
        generated["type"] = "Opaque"
    result.objects.append(generated)
    result.generated.add((kind, name))


def named(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} objects {kind} {name}"
    return found[0]


def target_of(objects: list[Object], patch: Object) -> Object:
    target = named(objects, patch["kind"], patch["metadata"]["name"])
    assert target["apiVersion"] == patch["apiVersion"], (
        f"patch of {patch['kind']} {patch['metadata']['name']}"
    )
    return target


def merge(target: Object, patch: Object) -> None:
    """A strategic merge patch as far as these files need one: maps merge, lists of named items merge by
    name (containers, env, ports, volumes), any other value replaces, null removes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        elif is_named_list(value) and is_named_list(target.get(key)):
            for item in value:
                same = [old for old in target[key] if old["name"] == item["name"]]
                if same:
                    merge(same[0], item)
                else:
                    target[key].append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def is_named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)


def split_image(image: str) -> tuple[str, str]:
    name, separator, tag = image.rpartition(":")
    if not separator or "/" in tag:  # no tag, or the colon was a registry's port
        return image, ""
    return name, tag


def set_image(objects: list[Object], image: dict[str, str]) -> None:
    for container in all_containers(objects):
        name, tag = split_image(container["image"])
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


@dataclass
class Reference:
    kind: str  # ConfigMap or Secret
    name_holder: dict[str, Any]
    field: str

    @property
    def name(self) -> str:
        name: str = self.name_holder[self.field]
        return name


REFERENCE_KINDS = {
    "configMapRef": "ConfigMap",
    "configMapKeyRef": "ConfigMap",
    "secretRef": "Secret",
    "secretKeyRef": "Secret",
}


def references(pod: Object) -> Iterator[Reference]:
    """Every ConfigMap and Secret a pod reads (environment and volumes)."""
    for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        sources = [*container.get("envFrom", [])]
        sources += [variable["valueFrom"] for variable in container.get("env", []) if "valueFrom" in variable]
        for source in sources:
            for key, kind in REFERENCE_KINDS.items():
                if key in source:
                    yield Reference(kind, source[key], "name")
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            yield Reference("ConfigMap", volume["configMap"], "name")
        if "secret" in volume:
            yield Reference("Secret", volume["secret"], "secretName")


def pod_specs(objects: list[Object]) -> Iterator[Object]:
    """The pods of the Deployments and of the migration Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj["spec"]["template"]["spec"]


def all_containers(objects: list[Object]) -> Iterator[Object]:
    for pod in pod_specs(objects):
        yield from pod.get("containers", [])
        yield from pod.get("initContainers", [])


# --- reading the rendered objects ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[Object]:
    return render(OVERLAY)


@pytest.fixture(scope="module")
def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    return services


def of_kind(objects: list[Object], kind: str) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container_of(deployment: Object) -> Object:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def port_number(container: Object, port: int | str) -> int:
    """A probe's or annotation's port: a number, or the name of one of the container's ports."""
    numbers = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    return int(numbers[port]) if isinstance(port, str) and not port.isdigit() else int(port)


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def secret_data(secret: Object) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}


def pod_environment(objects: list[Object], deployment: Object) -> dict[str, str]:
    """The variables the container starts with: its ConfigMaps and Secrets, then its own env."""
    container = container_of(deployment)
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment |= named(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            environment |= secret_data(named(objects, "Secret", source["secretRef"]["name"]))
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            reference = variable["valueFrom"]["secretKeyRef"]
            secret = secret_data(named(objects, "Secret", reference["name"]))
            if reference["key"] in secret or not reference.get("optional"):
                environment[variable["name"]] = secret[reference["key"]]
        else:
            environment[variable["name"]] = variable["value"]
    return environment


def resource_files(directory: Path) -> list[Path]:
    """The manifest files the kustomizations list as resources, overlay and base."""
    files = []
    for entry in kustomization(directory).get("resources", []):
        path = (directory / entry).resolve()
        files += resource_files(path) if path.is_dir() else [path]
    return files


def patch_files(directory: Path) -> list[Path]:
    return [(directory / patch["path"]).resolve() for patch in kustomization(directory).get("patches", [])]


def generator_files(directory: Path) -> list[Path]:
    spec = kustomization(directory)
    generators = [*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])]
    return [(directory / name).resolve() for generator in generators for name in generator.get("envs", [])]


def mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity.removesuffix(unit)) * factor
    raise AssertionError(f"write memory in Ki, Mi or Gi: {quantity}")


def grace_seconds(compose_period: str) -> int:
    assert compose_period.endswith("s") and compose_period[:-1].isdigit(), compose_period
    return int(compose_period[:-1])


def healthcheck_target(service: dict[str, Any]) -> tuple[int, str]:
    """(port, path) of the URL a compose healthcheck reads."""
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(service["healthcheck"]["test"]))
    assert match, service["healthcheck"]
    return int(match.group(1)), match.group(2)


def validate(obj: Object) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: {error.message}") from None


# --- the files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", resource_files(OVERLAY), ids=lambda path: str(path.relative_to(K8S)))
def test_every_manifest_validates_against_the_kubernetes_schemas(path: Path) -> None:
    objects = documents(path)
    assert objects, f"{path} holds no object"
    for obj in objects:
        validate(obj)


def test_the_rendered_overlay_validates_against_the_kubernetes_schemas(rendered: list[Object]) -> None:
    # Patches and generated objects included: a patch that breaks its target fails here.
    assert {"ConfigMap", "Secret", "Deployment", "HorizontalPodAutoscaler"} <= {o["kind"] for o in rendered}
    for obj in rendered:
        validate(obj)


def test_the_schemas_refuse_a_wrong_manifest() -> None:
    deployment = copy.deepcopy(documents(BASE / "api.yaml")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(AssertionError, match="paht"):
        validate(deployment)


def test_every_file_of_deploy_k8s_is_used_and_every_listed_file_exists() -> None:
    listed = set()
    for directory in (BASE, OVERLAY):
        listed |= {*resource_files(directory), *patch_files(directory), *generator_files(directory)}
        listed.add((directory / "kustomization.yaml").resolve())
    users = {path for path in listed if path.name in USER_FILES}
    for path in listed - users:
        assert path.is_file(), f"listed but missing: {path}"
    # The deployer's own files: ignored by git, an example beside each.
    assert users == {(OVERLAY / "secrets.env").resolve()}
    for path in users:
        assert path.name in (path.parent / ".gitignore").read_text(encoding="utf-8").splitlines()
        assert generator_file(path.parent, path.name).is_file()
    files = {p.resolve() for p in K8S.rglob("*") if p.is_file() and p.name != ".gitignore"}
    examples = {generator_file(path.parent, path.name).resolve() for path in users}
    assert files - listed - examples == set(), "files no kustomization uses"


def test_every_patch_targets_an_object_of_the_base(rendered: list[Object]) -> None:
    base = build(BASE).objects
    for path in patch_files(OVERLAY):
        for patch in documents(path):
            target_of(base, patch)  # one object of that kind, name and apiVersion
            # And the render carries the patch's values.
            rendered_target = named(rendered, patch["kind"], patch["metadata"]["name"])
            for key, value in patch.get("spec", {}).items():
                assert rendered_target["spec"][key] == value, f"{path.name}: {key}"


def test_the_loader_refuses_what_it_cannot_apply(tmp_path: Path) -> None:
    (tmp_path / "base").symlink_to(BASE)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "patch.yaml").write_text(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: hub-apii}\n"
    )
    spec: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    spec |= {"resources": ["../base"], "patches": [{"path": "patch.yaml"}]}
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(AssertionError, match="0 objects HorizontalPodAutoscaler hub-apii"):
        render(overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({**spec, "patches": [], "commonLabels": {}}))
    with pytest.raises(AssertionError, match="does not apply"):
        render(overlay)


# --- configuration and secrets ---------------------------------------------------------------------------


def test_the_pods_read_the_generated_config_and_secret(rendered: list[Object]) -> None:
    configs, secrets = of_kind(rendered, "ConfigMap"), of_kind(rendered, "Secret")
    (config,) = configs
    (secret,) = secrets
    assert config.startswith("hub-config-") and secret.startswith("hub-secrets-")
    for name in DEPLOYMENTS.values():
        pod = of_kind(rendered, "Deployment")[name]["spec"]["template"]["spec"]
        read = {(reference.kind, reference.name) for reference in references(pod)}
        assert read == {("ConfigMap", config), ("Secret", secret)}, name


def test_namespace_and_image_come_from_the_overlay(rendered: list[Object]) -> None:
    spec = kustomization(OVERLAY)
    namespace = spec["namespace"]
    assert named(rendered, "Namespace", namespace)
    for obj in rendered:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    (image,) = spec["images"]
    assert image["name"] == IMAGE
    assert image["newTag"] not in {"", "latest", "local"}
    images = {container["image"] for container in all_containers(rendered)}
    assert images == {f"{image['newName']}:{image['newTag']}"}, "one image for every process, as compose"
    assert {split_image(c["image"])[0] for c in all_containers(build(BASE).objects)} == {IMAGE}


def manifest_variables() -> dict[str, str]:
    """Every variable name the manifests set or show commented out, and where."""
    found: dict[str, str] = {}
    for directory in (BASE, OVERLAY):
        for path in generator_files(directory):
            path = generator_file(path.parent, path.name)
            text = path.read_text(encoding="utf-8")
            for name in [*env_file(path), *COMMENTED_VARIABLE.findall(text)]:
                found[name] = path.name
        for path in resource_files(directory) + patch_files(directory):
            for obj in documents(path):
                if obj["kind"] in {"ConfigMap", "Secret"}:
                    found |= dict.fromkeys([*obj.get("data", {}), *obj.get("stringData", {})], path.name)
                for container in all_containers([obj]):
                    found |= {variable["name"]: path.name for variable in container.get("env", [])}
    return found


def test_every_variable_is_a_setting_or_a_standard_one() -> None:
    variables = manifest_variables()
    assert {"HUB_PAYLOAD_KEYS", "TEMPORAL_ADDRESS", "OTEL_SERVICE_NAME"} <= set(variables)
    for name, where in variables.items():
        if name.startswith("HUB_"):
            assert name.removeprefix("HUB_").lower() in Settings.model_fields, (
                f"{where}: {name} is no setting"
            )
        else:
            assert name in STANDARD_VARIABLES or name.startswith(STANDARD_PREFIXES), f"{where}: {name}"


def is_secret_setting(name: str) -> bool:
    annotation = str(Settings.model_fields[name.removeprefix("HUB_").lower()].annotation)
    return "SecretStr" in annotation


def test_secrets_are_in_the_secret_and_only_there(rendered: list[Object]) -> None:
    (config,) = of_kind(rendered, "ConfigMap").values()
    (secret,) = of_kind(rendered, "Secret").values()
    for name in config["data"]:
        assert name != "TEMPORAL_API_KEY" and name != "HUB_DATABASE_URL", f"{name} belongs in the Secret"
        assert not (name.startswith("HUB_") and is_secret_setting(name)), f"{name} belongs in the Secret"
    keys = set(secret_data(secret))
    wanted = {f"HUB_{name.upper()}" for name in EVERY_SECRET}
    wanted |= {
        "HUB_PAYLOAD_KEYS", "HUB_PAYLOAD_ACTIVE_KEY", "HUB_DEALER_API_KEYS", "HUB_DEALER_WEBHOOK_SECRETS",
        "HUB_CODEC_SERVER_TOKEN", "TEMPORAL_API_KEY", "HUB_DATABASE_URL", "HUB_ZOHO_WEBHOOK_PREVIOUS_SECRET",
        "HUB_VTEX_HOOK_PREVIOUS_SECRET", "HUB_SMTP_PASSWORD",
    }  # fmt: skip
    assert not wanted - keys, f"missing from secrets.env.example: {sorted(wanted - keys)}"
    every_secret_setting = {
        f"HUB_{name.upper()}" for name in Settings.model_fields if is_secret_setting(name)
    }
    # HUB_TEMPORAL_API_KEY is the same key as TEMPORAL_API_KEY, which the Secret holds.
    assert every_secret_setting - keys == {"HUB_TEMPORAL_API_KEY"}


@pytest.fixture
def production_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A process environment holding nothing of this machine's hub or Temporal configuration, and no DNS:
    partner hosts resolve to nothing, as they would with no resolver (the URL checks still apply)."""
    for name in list(os.environ):
        if name.startswith(("HUB_", "TEMPORAL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.setattr(core.settings, "check_url", partial(check_url, resolver=lambda host: []))
    yield


def payload_keys(active: str) -> str:
    return f"{active}:{base64.b64encode(os.urandom(32)).decode()}"


def filled_in(secrets: dict[str, str]) -> dict[str, str]:
    """The example's secrets as a deployer writes them: each placeholder replaced, a real payload key."""
    filled = {
        name: value.replace("change-me", f"real-{i}") for i, (name, value) in enumerate(secrets.items())
    }
    if "HUB_PAYLOAD_ACTIVE_KEY" in secrets:
        filled["HUB_PAYLOAD_KEYS"] = payload_keys(secrets["HUB_PAYLOAD_ACTIVE_KEY"])
    if "HUB_EVENT_SIGNING_SECRET" in secrets:
        filled["HUB_EVENT_SIGNING_SECRET"] = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    return filled


# Each Deployment's process: how it loads its settings (its class, and a worker's --role), and what
# production requires it to hold.
PROCESSES: dict[str, tuple[type[Settings], dict[str, Any], Needs]] = {
    "hub-api": (ApiSettings, {}, API_NEEDS),
    "hub-worker-flows": (WorkerSettings, {"worker_role": "flows"}, WORKER_NEEDS["flows"]),
    "hub-worker-warehouse": (WorkerSettings, {"worker_role": "warehouse"}, WORKER_NEEDS["warehouse"]),
    "hub-migrate": (MigrationSettings, {}, MIGRATION_NEEDS),
}


def load_settings(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    process: tuple[type[Settings], dict[str, Any], Needs] = PROCESSES["hub-api"],
) -> Settings:
    """The settings ``process`` loads from ``environment`` and nothing else."""
    for name in list(os.environ):
        if name.startswith(("HUB_", "TEMPORAL_API_KEY", "OTEL_EXPORTER")):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    kind, arguments, _ = process
    return kind(_env_file=None, **arguments)


@pytest.mark.usefixtures("production_environment")
def test_the_overlay_is_a_production_configuration_once_the_secrets_are_filled_in(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployments = of_kind(rendered, "Deployment")
    config = env_file(OVERLAY / "config.env")
    example = env_file(OVERLAY / USER_FILES["secrets.env"])
    for name in DEPLOYMENTS.values():
        if name == DEPLOYMENTS["codec-server"]:
            continue
        environment = pod_environment(rendered, deployments[name])
        secrets = {key: environment[key] for key in example if key in environment}
        settings = load_settings(monkeypatch, environment | filled_in(secrets), PROCESSES[name])
        assert settings.environment == "production"
        assert settings.temporal_address == config["TEMPORAL_ADDRESS"], "TEMPORAL_* reach the settings"
        assert settings.temporal_namespace == config["TEMPORAL_NAMESPACE"]
        assert settings.temporal_api_key.get_secret_value() and tls_config(settings), "Cloud: API key, TLS"
        assert settings.bigquery_endpoint == "", "Google's BigQuery, not the emulator"
        assert api_tls_problem(settings) == "", "the API starts behind the ingress's TLS"


@pytest.mark.usefixtures("production_environment")
def test_the_codec_server_holds_its_keys_and_token_and_no_other_secret(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It decrypts customers' payloads for the Web UI and calls nothing: its pod is given the key ring
    and its token, no partner's credentials and no database URL, and production starts it so."""
    environment = pod_environment(rendered, of_kind(rendered, "Deployment")[DEPLOYMENTS["codec-server"]])
    example = env_file(OVERLAY / USER_FILES["secrets.env"])
    held = set(environment) & set(example)
    assert held == {"HUB_PAYLOAD_KEYS", "HUB_PAYLOAD_ACTIVE_KEY", "HUB_CODEC_SERVER_TOKEN"}
    secrets = filled_in({key: environment[key] for key in held})
    for name, value in (environment | secrets).items():
        monkeypatch.setenv(name, value)
    settings = CodecServerSettings(_env_file=None)
    assert settings.environment == "production"
    assert settings.temporal_namespace == env_file(OVERLAY / "config.env")["TEMPORAL_NAMESPACE"]
    create_codec_app(settings)  # refuses to start in production without its token
    monkeypatch.setenv("HUB_CODEC_SERVER_TOKEN", "")
    with pytest.raises(ValidationError, match="codec_server_token is empty"):
        CodecServerSettings(_env_file=None)
    with pytest.raises(ValidationError, match="zoho_client_secret is"):  # what the flows worker needs
        WorkerSettings(_env_file=None, worker_role="flows")


@pytest.mark.usefixtures("production_environment")
def test_the_example_secrets_are_refused_in_production(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployments = of_kind(rendered, "Deployment")
    environment = pod_environment(rendered, deployments["hub-api"])
    with pytest.raises(ValidationError, match="payload key 'k1' is not valid base64"):
        load_settings(monkeypatch, environment)
    placeholders: set[str] = set()
    for name in ("hub-api", "hub-worker-flows", "hub-worker-warehouse"):
        environment = pod_environment(rendered, deployments[name])
        real_key = {"HUB_PAYLOAD_KEYS": payload_keys(environment["HUB_PAYLOAD_ACTIVE_KEY"])}
        with pytest.raises(ValidationError) as refused:
            load_settings(monkeypatch, environment | real_key, PROCESSES[name])
        placeholders |= set(re.findall(r"(\w+(?:\[[\w-]+\])?) is a local placeholder", str(refused.value)))
    assert placeholders >= EVERY_SECRET
    assert "dealer_api_keys[dealer-sp-centro]" in placeholders
    assert "dealer_webhook_secrets[dealer-sp-centro]" in placeholders
    assert set(LOCAL_IDENTIFIERS) <= placeholders  # the client id and app key the example leaves to fill in


@pytest.mark.usefixtures("production_environment")
def test_each_process_holds_the_secrets_it_uses_and_no_other(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API, which faces the internet, holds no partner's credentials; each worker holds its role's
    partners' only; the migration, the database's URL. Each starts so in production, and refuses to
    without one of its own."""
    example = env_file(OVERLAY / USER_FILES["secrets.env"])
    jobs = {obj["metadata"]["name"]: obj for obj in rendered if obj["kind"] == "Job"}
    for name, process in PROCESSES.items():
        pod = jobs.get(name) or of_kind(rendered, "Deployment")[name]
        environment = pod_environment(rendered, pod)
        needs = process[2]
        held = needs.secrets | needs.dealer_secrets | needs.identifiers | needs.optional
        wanted = {f"HUB_{setting.upper()}" for setting in held} | {"HUB_DATABASE_URL"}
        if needs.payloads:
            wanted |= {"HUB_PAYLOAD_KEYS", "HUB_PAYLOAD_ACTIVE_KEY", "TEMPORAL_API_KEY"}
        assert set(environment) & set(example) == wanted, name
        filled = environment | filled_in({key: environment[key] for key in wanted})
        assert load_settings(monkeypatch, filled, process).environment == "production"
        for setting in sorted(needs.secrets):
            without = {**filled, f"HUB_{setting.upper()}": ""}
            with pytest.raises(ValidationError, match=f"{setting} is empty"):
                load_settings(monkeypatch, without, process)


# --- the processes: compose's commands, ports, probes and metrics ----------------------------------------


def test_each_deployment_runs_the_compose_command_on_the_compose_port(
    rendered: list[Object], compose_services: dict[str, dict[str, Any]]
) -> None:
    deployments = of_kind(rendered, "Deployment")
    assert set(deployments) == set(DEPLOYMENTS.values())
    for service, name in DEPLOYMENTS.items():
        container = container_of(deployments[name])
        command = [str(part) for part in compose_services[service]["command"]]
        # compose's `command` replaces the image's CMD; in Kubernetes that is `args` (`command` would
        # replace an ENTRYPOINT as well).
        assert container["args"] == command, name
        assert "command" not in container, name
        # The name each process gives its traces when none is set (api/app.py, workers/main.py).
        assert {v["name"]: v.get("value") for v in container["env"]}["OTEL_SERVICE_NAME"] == f"hub-{service}"
        ports = {p["containerPort"] for p in container["ports"]}
        if "--port" in command:
            assert ports == {int(option(command, "--port"))}, name
            assert {c for _, _, c in published_ports(compose_services[service])} == ports, name
    for name in WORKER_DEPLOYMENTS:
        environment = pod_environment(rendered, deployments[name])
        assert {p["containerPort"] for p in container_of(deployments[name])["ports"]} == {
            int(environment["HUB_WORKER_METRICS_PORT"])
        }


async def test_scrape_annotations_name_the_metrics_the_processes_serve(rendered: list[Object]) -> None:
    deployments = of_kind(rendered, "Deployment")
    jobs = scrape_jobs()
    for name, deployment in deployments.items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        container = container_of(deployment)
        if name == "hub-codec-server":
            assert "prometheus.io/scrape" not in annotations, "the codec server serves no metrics"
            assert (await codec_get("/metrics")).status_code == 404
            continue
        assert annotations["prometheus.io/scrape"] == "true", name
        port, path = int(annotations["prometheus.io/port"]), annotations["prometheus.io/path"]
        assert port in {p["containerPort"] for p in container["ports"]}, name
        if name == "hub-api":
            assert port == int(option(container["args"], "--port"))
            assert path == jobs["hub-api"]["metrics_path"]
            token = "scrape-token"
            settings = Settings(_env_file=None, metrics_token=SecretStr(token))
            response = await get_from_api(path, settings, {"Authorization": f"Bearer {token}"})
            assert response.status_code == 200 and "hub_webhooks_total" in response.text
        else:
            environment = pod_environment(rendered, deployment)
            assert port == int(environment["HUB_WORKER_METRICS_PORT"]), name
            assert environment["HUB_WORKER_METRICS_HOST"] == "0.0.0.0", (
                "127.0.0.1 is unreachable from Prometheus"
            )
            assert path == jobs["hub-worker"]["metrics_path"], name


async def codec_get(path: str) -> httpx.Response:
    app = create_codec_app(Settings(_env_file=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec") as client:
        return await client.get(path)


def api_paths() -> set[str]:
    return set(create_app(Settings(_env_file=None)).openapi()["paths"])


async def test_api_probes_point_at_paths_the_api_serves(
    rendered: list[Object], compose_services: dict[str, dict[str, Any]]
) -> None:
    container = container_of(of_kind(rendered, "Deployment")["hub-api"])
    api_port = int(option(container["args"], "--port"))
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    startup, liveness, readiness = (container[key] for key in probes)
    for probe in (startup, liveness, readiness):
        assert probe["httpGet"]["path"] in api_paths()
        assert port_number(container, probe["httpGet"]["port"]) == api_port
    # Liveness asks only whether the process answers: it must not restart replicas while Temporal is away.
    assert (await get_from_api(liveness["httpGet"]["path"])).status_code == 200
    assert liveness["httpGet"]["path"] == healthcheck_target(compose_services["api"])[1]
    # The startup check waits for Temporal, then the database, each up to CHECK_TIMEOUT_SECONDS.
    assert startup["httpGet"]["path"] != liveness["httpGet"]["path"]
    assert startup["timeoutSeconds"] > 2 * CHECK_TIMEOUT_SECONDS


class FakeService:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy

    async def get_system_info(self, request: Any) -> Any:
        if not self.healthy:
            raise ConnectionError("Temporal is away")
        return object()


class FakeTemporal:
    def __init__(self, healthy: bool) -> None:
        self.workflow_service = FakeService(healthy)


async def probe_status(path: str, engine: AsyncEngine, temporal_healthy: bool) -> int:
    app = create_app(Settings(_env_file=None))
    app.dependency_overrides[get_temporal] = partial(FakeTemporal, temporal_healthy)
    app.dependency_overrides[get_sessions] = partial(session_factory, engine)
    async with asgi_client(app) as client:
        return (await client.get(path)).status_code


async def test_a_replica_starts_taking_traffic_once_it_reached_temporal_and_keeps_it_while_temporal_is_away(
    rendered: list[Object], tmp_path: Path
) -> None:
    """A new replica waits for Temporal (startup probe: 503, then 200); a running one stays in the Service
    through an outage every replica shares (readiness: 200), where the API answers 503 itself."""
    container = container_of(of_kind(rendered, "Deployment")["hub-api"])
    startup, readiness = (container[key]["httpGet"]["path"] for key in ("startupProbe", "readinessProbe"))
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    upgrade(url)  # the migration Job ran (tests/api/test_readiness.py: before it did)
    engine = create_engine(url)
    try:
        assert await probe_status(startup, engine, temporal_healthy=False) == 503
        assert await probe_status(startup, engine, temporal_healthy=True) == 200
        assert await probe_status(readiness, engine, temporal_healthy=False) == 200
    finally:
        await engine.dispose()


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


async def test_codec_and_worker_probes_read_what_compose_healthchecks_read(
    rendered: list[Object], compose_services: dict[str, dict[str, Any]]
) -> None:
    deployments = of_kind(rendered, "Deployment")
    for service, name in DEPLOYMENTS.items():
        if service == "api":
            continue
        container = container_of(deployments[name])
        port, path = healthcheck_target(compose_services[service])
        probes = [
            container[key] for key in ("startupProbe", "livenessProbe", "readinessProbe") if key in container
        ]
        assert {"livenessProbe", "readinessProbe"} <= set(container), name
        for probe in probes:
            assert probe["httpGet"]["path"] == path, name
            assert port_number(container, probe["httpGet"]["port"]) == port, name
    codec_path = container_of(deployments["hub-codec-server"])["livenessProbe"]["httpGet"]["path"]
    assert (await codec_get(codec_path)).status_code == 200


def test_grace_periods(rendered: list[Object], compose_services: dict[str, dict[str, Any]]) -> None:
    deployments = of_kind(rendered, "Deployment")
    for service, name in DEPLOYMENTS.items():
        if name in WORKER_DEPLOYMENTS:
            pod = deployments[name]["spec"]["template"]["spec"]
            assert pod["terminationGracePeriodSeconds"] == grace_seconds(
                compose_services[service]["stop_grace_period"]
            ), name
            # Running activities get the worker's graceful shutdown, then the worker closes.
            graceful = Settings.model_fields["worker_graceful_shutdown_seconds"].default
            assert pod["terminationGracePeriodSeconds"] >= graceful + 10, name
    # The warehouse's dbt build, cancelled then, gets its grace to cancel its BigQuery jobs (else the
    # next build waits out their time-out).
    warehouse = deployments["hub-worker-warehouse"]["spec"]["template"]["spec"]
    assert warehouse["terminationGracePeriodSeconds"] >= graceful + STOP_GRACE_SECONDS + 10
    api = deployments["hub-api"]["spec"]["template"]["spec"]
    (sleep, seconds) = container_of(deployments["hub-api"])["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    ack = Settings.model_fields["webhook_ack_timeout_seconds"].default
    assert api["terminationGracePeriodSeconds"] > int(seconds) + ack, (
        "the last webhooks finish before SIGKILL"
    )


# --- pods: user, resources, scaling ----------------------------------------------------------------------


def dockerfile_user() -> tuple[int, int]:
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid)


def dockerfile_state_dir() -> str:
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            variables = dict(item.partition("=")[::2] for item in shlex.split(rest))
            if "HUB_STATE_DIR" in variables:
                return variables["HUB_STATE_DIR"]
    raise AssertionError("the Dockerfile sets no HUB_STATE_DIR")


def test_pods_run_as_the_dockerfile_user_under_the_restricted_profile(rendered: list[Object]) -> None:
    uid, gid = dockerfile_user()
    namespace = named(rendered, "Namespace", kustomization(OVERLAY)["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, deployment in of_kind(rendered, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        context = pod["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), name
        assert context["runAsNonRoot"] is True and uid != 0
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
        container = container_of(deployment)
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        # A read-only image: the state folder the Dockerfile names, and /tmp, are volumes.
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert {dockerfile_state_dir(), "/tmp"} <= mounts, name
        # Service links would add HUB_<SERVICE>_PORT=tcp://... and the like: the settings' own prefix.
        assert pod["enableServiceLinks"] is False, name
        # No process calls the Kubernetes API: no pod holds a token for it (the API faces the internet).
        account = named(rendered, "ServiceAccount", pod["serviceAccountName"])
        mounted = pod.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True))
        assert mounted is False, name


def test_memory_follows_the_measured_figures(rendered: list[Object]) -> None:
    benchmark = README.read_text(encoding="utf-8").split("## Benchmark", 1)[1].split("\n## ", 1)[0]
    deployments = of_kind(rendered, "Deployment")
    figures = MEASURED_MIB | {"hub-codec-server": (CODEC_SERVER_IDLE_MIB, CODEC_SERVER_IDLE_MIB)}
    assert set(figures) == set(deployments)
    for name, (steady, highest) in figures.items():
        if name in MEASURED_MIB:
            assert f"{steady} MiB" in benchmark or f"{steady}\N{EN DASH}" in benchmark, name
            assert f"{highest} MiB" in benchmark, name
        resources = container_of(deployments[name])["resources"]
        request, limit = mib(resources["requests"]["memory"]), mib(resources["limits"]["memory"])
        assert request >= steady, f"{name}: request {request} MiB under the {steady} MiB it holds"
        assert limit >= 1.25 * highest, f"{name}: limit {limit} MiB too close to the {highest} MiB measured"
        assert "cpu" in resources["requests"], f"{name}: the autoscaler computes utilization on it"


def test_autoscalers_and_disruption_budgets(rendered: list[Object]) -> None:
    deployments = of_kind(rendered, "Deployment")
    autoscalers = of_kind(rendered, "HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in autoscalers.values()} == {
        "hub-api",
        *WORKER_DEPLOYMENTS,
    }
    for hpa in autoscalers.values():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
        # A replica count in the Deployment would reset the autoscaler's at every apply.
        assert "replicas" not in deployments[target["name"]]["spec"], target["name"]
    assert deployments["hub-codec-server"]["spec"]["replicas"] >= 2
    budgets = of_kind(rendered, "PodDisruptionBudget")
    for name in ("hub-api", *WORKER_DEPLOYMENTS):
        selector = budgets[name]["spec"]["selector"]
        assert selector == deployments[name]["spec"]["selector"], name
        assert budgets[name]["spec"]["maxUnavailable"] < autoscalers[name]["spec"]["minReplicas"]


def selected(deployments: dict[str, Object], selector: dict[str, str]) -> list[Object]:
    return [
        d
        for d in deployments.values()
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]


def test_services_reach_the_api_and_codec_ports(rendered: list[Object]) -> None:
    deployments = of_kind(rendered, "Deployment")
    services = of_kind(rendered, "Service")
    for deployment in deployments.values():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
    for service in services.values():
        (deployment,) = selected(deployments, service["spec"]["selector"])
        for port in service["spec"]["ports"]:
            container = container_of(deployment)
            assert port_number(container, port["targetPort"]) in {
                p["containerPort"] for p in container["ports"]
            }
    assert set(services) == {"hub-api", "hub-codec-server"}


def test_the_ingress_exposes_the_webhooks_only(rendered: list[Object]) -> None:
    (ingress,) = of_kind(rendered, "Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    prefixes = []
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        service = of_kind(rendered, "Service")[backend["name"]]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
        assert path["pathType"] == "Prefix"
        prefixes.append(path["path"].rstrip("/") + "/")
    assert rule["host"] in {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    exposed = {p for p in api_paths() | {"/metrics", "/docs"} if any(p.startswith(x) for x in prefixes)}
    assert exposed and all(p.startswith("/webhooks/") for p in exposed), sorted(exposed)
    hook = env_file(OVERLAY / "config.env")["HUB_VTEX_HOOK_URL"]
    assert hook == f"https://{rule['host']}/webhooks/vtex/orders" and "/webhooks/vtex/orders" in exposed
    assert env_file(OVERLAY / "config.env")["HUB_API_BEHIND_TLS_PROXY"] == "true"


# --- Prometheus on Kubernetes ------------------------------------------------------------------------------

PROMETHEUS_K8S = ROOT / "deploy" / "prometheus" / "prometheus-kubernetes.yml"


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (``k=v`` and ``k in (a,b)`` terms, comma-separated) against labels."""
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = term.strip()
        if found := re.fullmatch(r"(\S+) in \(([^)]*)\)", term):
            key, values = found.group(1), {v.strip() for v in found.group(2).split(",")}
            if labels.get(key) not in values:
                return False
        else:
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
    return True


def scraped_by(config: dict[str, Any], namespace: str, pod: Object) -> list[tuple[str, str]]:
    """(job, address) of each scrape job that would take the pod: its discovery (namespace, label
    selector) and its relabelling's keep rules and address, as Prometheus applies them."""
    labels, annotations = pod["metadata"].get("labels", {}), pod["metadata"].get("annotations", {})
    meta = {
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": annotations.get("prometheus.io/scrape", ""),
        "__meta_kubernetes_pod_annotation_prometheus_io_port": annotations.get("prometheus.io/port", ""),
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ip": "10.0.0.7",
        "__meta_kubernetes_pod_name": "pod-0",
    }
    taken = []
    for job in config["scrape_configs"]:
        [discovery] = job["kubernetes_sd_configs"]
        if namespace not in discovery["namespaces"]["names"]:
            continue
        if not all(selector_matches(s["label"], labels) for s in discovery.get("selectors", [])):
            continue
        kept, address = True, ""
        for rule in job["relabel_configs"]:
            value = ";".join(meta.get(name, "") for name in rule["source_labels"])
            matched = re.fullmatch(rule.get("regex", "(.*)"), value)
            if rule.get("action") == "keep":
                kept = kept and matched is not None
            elif rule["target_label"] == "__address__" and matched:
                address = matched.expand(rule["replacement"].replace("$", "\\"))
        if kept:
            taken.append((job["job_name"], address))
    return taken


def test_the_kubernetes_scrape_configuration_names_the_jobs_the_alerts_select(rendered: list[Object]) -> None:
    """Every API and worker replica is scraped under the job its alerts select (up{job=...}), at the
    port its pod announces; the codec server is not (it serves no metrics)."""
    config = yaml.safe_load(PROMETHEUS_K8S.read_text(encoding="utf-8"))
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    namespace = kustomization(OVERLAY)["namespace"]
    deployments = of_kind(rendered, "Deployment")
    expected = {"hub-api": "hub-api", "hub-worker-flows": "hub-worker", "hub-worker-warehouse": "hub-worker"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        jobs = scraped_by(config, namespace, pod)
        if name not in expected:
            assert jobs == [], name
            continue
        port = pod["metadata"]["annotations"]["prometheus.io/port"]
        assert jobs == [(expected[name], f"10.0.0.7:{port}")], name
        assert f'up{{job="{expected[name]}"}}' in alerts
        if expected[name] == "hub-worker":  # each role's absence has its alert, by the pods' component
            component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
            assert f'absent(up{{job="hub-worker", component="{component}"}})' in alerts
    compose = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    by_name = {job["job_name"]: job for job in compose["scrape_configs"]}
    for job in config["scrape_configs"]:  # the same jobs as compose's, with the same token and path
        assert job.get("authorization") == by_name[job["job_name"]].get("authorization")
        assert job["metrics_path"] == by_name[job["job_name"]]["metrics_path"]
    assert config["rule_files"] == compose["rule_files"]


# --- who may reach the pods ------------------------------------------------------------------------------


def selects(selector: Object, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) selects these labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "the test reads In only"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def reachable(policies: list[Object], template: Object) -> dict[str, list[Object]]:
    """Each named port of the pod that some policy lets a connection reach, with who may open it
    (the policies' ``from`` peers; an empty list: anyone)."""
    ports: dict[str, list[Object]] = {}
    for policy in policies:
        if not selects(policy["spec"]["podSelector"], template["metadata"]["labels"]):
            continue
        for rule in policy["spec"].get("ingress", []):
            for port in rule["ports"]:
                ports.setdefault(port["port"], []).extend(rule.get("from", []))
    return ports


def test_each_pod_is_reachable_only_on_its_own_ports_and_the_codec_server_only_by_its_clients(
    rendered: list[Object],
) -> None:
    """The read API and the codec server serve plain HTTP inside the cluster: what the policies let in
    is each process's one port, and the codec server, which decrypts customers' payloads, only from the
    pods labelled as its clients (the support staff's sign-on proxy)."""
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    deny = named(rendered, "NetworkPolicy", "hub-deny-ingress")
    assert deny["spec"]["policyTypes"] == ["Ingress"] and not deny["spec"].get("ingress")
    templates = {
        obj["metadata"]["name"]: obj["spec"]["template"]
        for obj in rendered
        if obj["kind"] in ("Deployment", "Job")
    }
    for name, template in templates.items():
        assert selects(deny["spec"]["podSelector"], template["metadata"]["labels"]), f"{name}: not denied"
        named_ports = {port["name"] for c in template["spec"]["containers"] for port in c.get("ports", [])}
        assert set(reachable(policies, template)) <= named_ports, name  # no policy names a port it lacks
    opened = {name: reachable(policies, template) for name, template in templates.items()}
    assert opened["hub-api"] == {"http": []}  # the ingress controller, the kubelet, Prometheus
    prometheus = {"metrics": [{"namespaceSelector": {}}]}
    assert opened["hub-worker-flows"] == opened["hub-worker-warehouse"] == prometheus
    assert opened["hub-migrate"] == {}
    labelled = {"matchLabels": {"integrations-hub/codec-client": "true"}}
    assert opened["hub-codec-server"] == {"http": [{"namespaceSelector": {}, "podSelector": labelled}]}
    assert "integrations-hub/codec-client" in README.read_text(encoding="utf-8")
