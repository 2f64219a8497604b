"""Serve the API: ``python -m api [--host H] [--port P] [--workers N]``, over TLS when configured.

uvicorn with the hub's TLS settings: with ``HUB_API_TLS_CERT_FILE`` and ``HUB_API_TLS_KEY_FILE`` it
serves https only. In production it refuses to start without them unless ``HUB_API_BEHIND_TLS_PROXY``
says a proxy in front terminates TLS; then the proxy's ``X-Forwarded-*`` headers are trusted. Idle
connections stay open ``HUB_API_KEEP_ALIVE_SECONDS``, longer than the proxy in front keeps its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from core.logs import configure_logging
from core.production import api_tls_problem
from core.settings import ApiSettings, get_settings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes (locally; replicas in production)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    settings = get_settings(ApiSettings)
    if problem := api_tls_problem(settings):
        sys.exit(f"error: {problem}")
    configure_logging(settings.log_level)  # uvicorn's own lines too, also in its supervisor process
    uvicorn.run(
        "api.app:app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=None,  # keep the JSON logging set up above
        ws="none",  # no WebSocket routes: the protocol's modules are not loaded (~1 MiB a process)
        ssl_certfile=settings.api_tls_cert_file or None,
        ssl_keyfile=settings.api_tls_key_file or None,
        proxy_headers=settings.api_behind_tls_proxy,
        forwarded_allow_ips="*" if settings.api_behind_tls_proxy else None,
        timeout_keep_alive=settings.api_keep_alive_seconds,
    )


if __name__ == "__main__":
    main()
