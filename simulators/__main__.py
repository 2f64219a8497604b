"""Run the simulators: ``python -m simulators --port 8100 --api-url http://127.0.0.1:8000``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import uvicorn

from simulators.app import create_app
from simulators.config import SERVER_KEEPALIVE_SECONDS, SimulatorConfig

# CLI flag (dest) -> SimulatorConfig field; flags left out keep the SIM_* environment value or the default.
FLAG_FIELDS = {
    "public_base_url": "public_base_url",
    "api_url": "api_url",
    "webhook_secret": "zoho_webhook_secret",
    "webhook_secret_header": "zoho_webhook_secret_header",
    "zoho_client_id": "zoho_client_id",
    "zoho_client_secret": "zoho_client_secret",
    "zoho_refresh_token": "zoho_refresh_token",
    "event_signing_secret": "event_signing_secret",
    "token_lifetime_seconds": "token_lifetime_seconds",
    "seed": "seed",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--public-base-url", help="URL clients use to reach the simulators (WSDL, api_domain)"
    )
    parser.add_argument("--api-url", help="the project's API, where Zoho webhooks are posted")
    parser.add_argument("--webhook-secret", help="value of the Zoho webhook secret header")
    parser.add_argument("--webhook-secret-header")
    parser.add_argument("--zoho-client-id")
    parser.add_argument("--zoho-client-secret")
    parser.add_argument("--zoho-refresh-token")
    parser.add_argument("--event-signing-secret", help="Standard Webhooks secret (whsec_...)")
    parser.add_argument("--token-lifetime-seconds", type=int)
    parser.add_argument("--seed", type=int, help="seed of the generated leads")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> SimulatorConfig:
    """The configuration: CLI flags over ``SIM_*`` variables over defaults.

    Args:
        args: Parsed command line.

    Returns:
        The config; ``public_base_url`` follows ``--host``/``--port`` unless set explicitly.
    """
    overrides: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in FLAG_FIELDS.items() if getattr(args, flag) is not None
    }
    config = SimulatorConfig(**overrides)
    if "public_base_url" not in config.model_fields_set:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        config = config.model_copy(update={"public_base_url": f"http://{host}:{args.port}"})
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the simulators until interrupted."""
    args = parse_args(argv)
    uvicorn.run(
        create_app(build_config(args)),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_keep_alive=SERVER_KEEPALIVE_SECONDS,
    )


if __name__ == "__main__":
    main()
