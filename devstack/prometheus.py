"""Prometheus for the local stack: the compose stack's configuration, its targets on the local ports.

``deploy/prometheus/prometheus.yml`` scrapes ``api:8000`` and ``worker:9464`` on the compose network and
loads the alert rules beside it. Here the same file is written to the state folder with each job's
target moved to 127.0.0.1 and the stack's ports, and the rule and credentials files named by their full
path; nothing else changes, so the local Prometheus evaluates the rules and serves the queries the
dashboard uses. (The local API's /metrics is open unless HUB_METRICS_TOKEN is set; the token Prometheus
sends is then ignored.)
Debian's ``prometheus`` package provides the binary; without it the stack runs without Prometheus.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from core.settings import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"
API_JOB = "hub-api"
WORKER_JOB = "hub-worker"


def binary() -> str | None:
    """The ``prometheus`` binary on PATH (Debian: ``apt-get install prometheus``), or None."""
    return shutil.which("prometheus")


def local_config(
    api_port: int, worker_ports: list[int], scrape_interval: str | None = None
) -> dict[str, Any]:
    """The compose configuration with its jobs scraping 127.0.0.1 at these ports (a worker per role:
    flows, then warehouse; one port alone takes the flows worker's labels).

    ``scrape_interval`` (e.g. ``"1s"``) replaces the global scrape and evaluation intervals.
    """
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    ports = {API_JOB: [api_port], WORKER_JOB: worker_ports}
    for job in config["scrape_configs"]:
        # The compose file's target groups in order (a worker's: flows, then warehouse), their labels kept.
        groups = zip(job["static_configs"], ports[job["job_name"]], strict=False)
        job["static_configs"] = [{**group, "targets": [f"127.0.0.1:{port}"]} for group, port in groups]
        authorization = job.get("authorization", {})
        if "credentials_file" in authorization:
            authorization["credentials_file"] = str(CONFIG.parent / authorization["credentials_file"])
    config["rule_files"] = [str(CONFIG.parent / name) for name in config.get("rule_files", [])]
    if scrape_interval:
        config["global"].update(scrape_interval=scrape_interval, evaluation_interval=scrape_interval)
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def command(prometheus: str, config_file: Path, data_dir: Path, port: int) -> list[str]:
    """Prometheus on 127.0.0.1:``port`` with its data in ``data_dir``."""
    return [
        prometheus,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
