"""Configuration of the simulators: defaults match the hub's local settings, ``SIM_*`` env vars override."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_PLACEHOLDER = "local-dev-only-change-me"
# A client keeping an idle connection as long as the server it calls (uvicorn's default and httpx's are
# both 5 s) races the server's close and finds the connection cut as it reuses it. The simulators keep
# theirs open SERVER_KEEPALIVE_SECONDS, as the partners' servers and the hub's API do (longer than the
# hub's clients keep theirs); the simulators' and the benchmarks' own clients drop idle ones first.
CLIENT_KEEPALIVE_SECONDS = 2.0
SERVER_KEEPALIVE_SECONDS = 75
LOCAL_EVENT_SIGNING_SECRET = "whsec_bG9jYWwtZGV2LW9ubHktY2hhbmdlLW1lLXNpZ25pbmc="


class SimulatorConfig(BaseSettings):
    """Everything a simulator app needs to know about its surroundings.

    The simulators stand in for external SaaS during local runs and tests only, so the secrets are plain
    strings with the same local placeholders as the hub's own settings; they are left out of ``repr``.
    """

    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore")

    public_base_url: str = "http://127.0.0.1:8100"
    api_url: str = "http://127.0.0.1:8000"
    zoho_webhook_secret: str = Field(default=LOCAL_PLACEHOLDER, repr=False)
    zoho_webhook_secret_header: str = "X-Zoho-Webhook-Token"
    zoho_client_id: str = "local-client"
    zoho_client_secret: str = Field(default=LOCAL_PLACEHOLDER, repr=False)
    zoho_refresh_token: str = Field(default=LOCAL_PLACEHOLDER, repr=False)
    event_signing_secret: str = Field(default=LOCAL_EVENT_SIGNING_SECRET, repr=False)
    token_lifetime_seconds: int = Field(default=3600, gt=0)
    # Dealers report lead statuses to the hub's dealer webhook with this secret (the hub's local default).
    dealer_webhook_secret: str = Field(default=LOCAL_PLACEHOLDER, repr=False)
    dealer_webhook_secret_header: str = "X-Dealer-Webhook-Token"
    # The dealers' ADF lead inboxes: an SMTP server on this port (0: none). An answer "lost" by a fault
    # comes this late, after the sender's timeout.
    smtp_port: int = Field(default=0, ge=0, lt=65536)
    smtp_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for the hub's services to reach
    smtp_lost_answer_seconds: float = Field(default=15.0, gt=0)
    vtex_account: str = "localstore"
    vtex_app_key: str = "vtexappkey-localstore-LOCAL"
    vtex_app_token: str = Field(default=LOCAL_PLACEHOLDER, repr=False)
    vtex_hook_secret: str = Field(default=LOCAL_PLACEHOLDER, repr=False)
    vtex_hook_secret_header: str = "X-VTEX-Hook-Secret"
    vtex_feed_visibility_timeout_seconds: float = Field(default=60.0, gt=0)
    # The generated order history the OMS list API serves: fixed end, so every run serves the same orders.
    vtex_history_orders: int = Field(default=10_000, ge=0, le=1_000_000)
    vtex_history_days: int = Field(default=730, gt=0)
    vtex_history_end: str = "2026-11-01T00:00:00Z"
    vtex_history_seed: int = 20241101
    # The generated catalog the catalog and pricing APIs serve: SKU ids 1..vtex_catalog_skus.
    vtex_catalog_skus: int = Field(default=20_000, ge=0, le=1_000_000)
    vtex_catalog_seed: int = 20241102
    # The generated Master Data customers (entity CL), created over the two years before vtex_history_end.
    vtex_customers: int = Field(default=5_000, ge=0, le=1_000_000)
    vtex_customers_seed: int = 20241103
    # Master Data forgets a scroll token left unused this long (20 minutes at VTEX).
    vtex_md_scroll_idle_seconds: float = Field(default=1200, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    seed: int | None = None

    @field_validator("vtex_history_end")
    @classmethod
    def _aware_history_end(cls, value: str) -> str:
        # Refused at start-up rather than on the first list request.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as error:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from error
        if moment.tzinfo is None:
            raise ValueError(f"the history end needs a zone (Z or an offset): {value!r}")
        return value
