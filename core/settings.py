"""The one place that reads configuration: environment variables prefixed ``HUB_`` and ``.env``."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS

from core.codec import LOCAL_PAYLOAD_KEY, LOCAL_PAYLOAD_KEY_ID, decode_key
from core.constants import (
    DBT_TASK_QUEUE,
    LEADS_TASK_QUEUE,
    OPPORTUNITIES_TASK_QUEUE,
    PARTNER_ANSWER_MAX_BYTES,
    VTEX_API_TASK_QUEUE,
    VTEX_ORDERS_TASK_QUEUE,
)
from core.outbound import AddressRules, check_url

WorkerRole = Literal["flows", "warehouse", "all"]
EventLoop = Literal["uvloop", "asyncio"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_PLACEHOLDER = "local-dev-only-change-me"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"  # the dev server's
LOCAL_UI_ORIGINS = ["http://localhost:8233", "http://127.0.0.1:8233"]  # the dev server's Web UI
# The least a long VTEX job (backfill, catalog and customer syncs) may be paced at: one request every
# 10 s, so a request waiting for its turn still comes within its activity's 20 s heartbeat.
LONG_JOB_MIN_RATE = 0.1


def sendable_secret(secret: SecretStr) -> SecretStr:
    """A secret as an HTTP header can carry it: without the spaces or line break a paste (or a file
    mounted as a Kubernetes secret) leaves around it. One with a control character inside is refused:
    the HTTP client would refuse every request with the secret quoted in its error, which reaches the
    activity's failure and the logs."""
    text = secret.get_secret_value().strip()
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in text):
        raise ValueError("holds a control character (a line break pasted inside it?)")
    return SecretStr(text)


class Settings(BaseSettings):
    """Every setting of the system; `.env.example` documents each one."""

    # Errors name the setting, never echo the input: it holds secrets.
    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["local", "test", "production"] = "local"
    state_dir: Path = PROJECT_ROOT / "var"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # of the API's and worker's JSON logs
    # Every this many seconds the API and the workers hand back to the system the free pages glibc's malloc
    # keeps inside its heaps after bursts of work (core/memory.py); 0 never does.
    memory_trim_seconds: float = Field(default=60, ge=0)

    # Temporal. Temporal's own client configuration comes first (temporalio.envconfig: TEMPORAL_ADDRESS,
    # TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, a temporal.toml profile chosen by
    # TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE); each HUB_TEMPORAL_* setting given overrides it. Empty
    # address and namespace: the profile's, else 127.0.0.1:7233 and "default".
    temporal_client_config: bool = True  # false: the HUB_TEMPORAL_* settings alone (the local stack)
    temporal_address: str = ""
    temporal_namespace: str = ""
    # TLS to Temporal: on with any file below or an API key (Temporal Cloud), or by temporal_tls. The CA
    # is needed for a private CA only; client certificate and key together give mTLS. Without any of
    # them, the TLS of Temporal's client configuration applies (false does not turn it off).
    temporal_tls: bool = False
    temporal_tls_ca_file: str = ""
    temporal_tls_cert_file: str = ""
    temporal_tls_key_file: str = ""
    temporal_tls_server_name: str = ""  # when the address is not the certificate's name
    temporal_api_key: SecretStr = SecretStr("")
    leads_task_queue: str = LEADS_TASK_QUEUE
    opportunities_task_queue: str = OPPORTUNITIES_TASK_QUEUE
    vtex_orders_task_queue: str = VTEX_ORDERS_TASK_QUEUE
    vtex_api_task_queue: str = VTEX_API_TASK_QUEUE  # every VTEX call (the order reads' rate: Temporal's)
    dbt_task_queue: str = DBT_TASK_QUEUE  # dbt builds of silver and gold, one at a time
    # Payload encryption (core/codec.py): "id:base64key,id2:base64key" (AES-256, 32 bytes each). The
    # active key encrypts, every key decrypts. Empty: the local key in local runs and tests; production
    # refuses to start without keys of its own.
    payload_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    payload_active_key: str = ""  # may stay empty when the ring holds one key
    payload_encryption: bool = True  # off only to measure what encryption costs; production refuses it
    # Codec server (api/codec_server.py): decodes payloads for the Temporal Web UI and CLI. Production
    # refuses requests without this bearer token; locally it is optional.
    codec_server_token: SecretStr = SecretStr("")
    codec_server_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOCAL_UI_ORIGINS)
    )

    # Portal / central database (SQLAlchemy URL, sync driver form)
    database_url: str = ""
    # PostgreSQL connections each process keeps, and may open beyond them at a peak (SQLite: one).
    database_pool_size: int = Field(default=5, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)

    # Webhook API. TLS: `python -m api` serves https with a certificate and key; in production it refuses
    # to start without them unless api_behind_tls_proxy says a proxy in front terminates TLS.
    api_tls_cert_file: str = ""
    api_tls_key_file: str = ""
    api_behind_tls_proxy: bool = False
    # How long an idle connection stays open for the next request. Longer than the idle timeout of the
    # load balancer or ingress in front (60 s for ingress-nginx and AWS's Application Load Balancer by
    # default; Google Cloud's, GKE's Ingress included, 600 s: set 620), or it reuses a connection the
    # API is closing and answers the webhook 502.
    api_keep_alive_seconds: int = Field(default=75, gt=0)
    webhook_max_body_bytes: int = Field(default=256 * 1024, gt=0)
    zoho_webhook_secret: SecretStr = SecretStr(LOCAL_PLACEHOLDER)
    # While a secret rotates: the previous one, accepted alongside until removed.
    zoho_webhook_previous_secret: SecretStr = SecretStr("")
    zoho_webhook_secret_header: str = "X-Zoho-Webhook-Token"
    read_api_token: SecretStr = SecretStr(LOCAL_PLACEHOLDER)  # Bearer token of the /v1 read API
    # Bearer token the API's /metrics requires. Empty leaves it open, which only local runs accept: the
    # endpoint is on the public API, so production refuses to start without one.
    metrics_token: SecretStr = SecretStr("")
    # The Retry-After of a 503: Temporal or the portal database did not answer (the name is historical).
    temporal_unavailable_retry_after_seconds: int = Field(default=5, gt=0)
    # The whole wait for Temporal (connect, SDK retries, the call): past it the webhook gets 503.
    webhook_ack_timeout_seconds: float = Field(default=2.5, gt=0, le=30)
    # Calls to Temporal in flight per API process; beyond them a webhook gets 503 at once (shed load).
    webhook_max_in_flight: int = Field(default=128, gt=0)
    api_processes: int = Field(default=2, gt=0)  # uvicorn worker processes of the local stack's API

    # Zoho CRM API
    zoho_api_base_url: str = "http://127.0.0.1:8100/zoho"
    zoho_accounts_url: str = "http://127.0.0.1:8100/zoho"
    zoho_client_id: str = "local-client"
    zoho_client_secret: SecretStr = SecretStr(LOCAL_PLACEHOLDER)
    zoho_refresh_token: SecretStr = SecretStr(LOCAL_PLACEHOLDER)
    zoho_api_version: str = "v8"
    zoho_token_refresh_margin_seconds: int = Field(default=300, ge=0)

    # Dealer CRMs: API keys by dealer id, e.g. {"dealer-sp-centro": "key"}
    dealer_api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    dealer_http_timeout_seconds: float = Field(default=10.0, gt=0)
    # The most of a partner's answer (Zoho, VTEX, a dealer CRM, a subscriber) a call reads, decoded:
    # past it the call fails as a dropped connection does and is retried (clients/bounded.py).
    partner_answer_max_bytes: int = Field(default=PARTNER_ANSWER_MAX_BYTES, gt=0)
    # Dealers' status webhooks (POST /webhooks/dealers/{dealer}/leads/{lead}/status): a secret per dealer,
    # e.g. {"dealer-sp-centro": "secret"}, sent in the header below. A dealer without one is refused.
    dealer_webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # While a dealer's secret rotates: its previous one, accepted alongside until removed.
    dealer_webhook_previous_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    dealer_webhook_secret_header: str = "X-Dealer-Webhook-Token"
    # How often each API process hands on dealers' reports whose hand-over to the lead's run failed.
    dealer_report_sweep_seconds: float = Field(default=15.0, gt=0)
    # ADF dealers with a mailto: URL: the SMTP server their lead e-mails are handed to (STARTTLS).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_sender: str = "leads@hub.local"

    # Lead distribution
    business_timezone: str = "America/Sao_Paulo"  # dealers' daily capacity counts in this day
    assign_dealer_deadline_seconds: int = Field(default=24 * 3600, gt=0)
    dealer_delivery_attempt_timeout_seconds: int = Field(default=30, gt=0)
    dealer_delivery_retry_window_seconds: int = Field(default=6 * 3600, gt=0)
    # A dealer that misses its SLA loses the lead to the next one, this many times; then the fallback owner
    # (a Zoho user or queue id; empty: the lead keeps its owner) gets it and support is alerted.
    lead_max_reroutes: int = Field(default=3, ge=0, le=20)
    lead_fallback_owner_id: str = ""
    # After a dealer whose CRM is read (sla.status_poll_seconds) accepts, its CRM is read hourly for the
    # lead's later statuses (contacted, qualified, ...) until lost or sold, or this many days after the
    # lead's run began following it (a run that resumes the lead starts counting again).
    lead_follow_days: int = Field(default=30, ge=0, le=365)

    # Opportunity replication
    opportunity_idle_close_seconds: int = Field(default=3600, gt=0)  # a deal's workflow ends after this quiet
    # Gathers a deal's out-of-order updates before Zoho's record is read. At least 1 s: Zoho's times have
    # second precision, and a record read within the second of a move may not show that second's last move.
    opportunity_batch_window_seconds: float = Field(default=2.0, ge=1)
    opportunity_changes_per_run: int = Field(default=500, gt=0)  # then continue-as-new (history stays small)

    # VTEX (production base URL: https://<account>.vtexcommercestable.com.br)
    vtex_account: str = "localstore"
    vtex_api_base_url: str = "http://127.0.0.1:8100/vtex"
    vtex_app_key: str = "vtexappkey-localstore-LOCAL"
    vtex_app_token: SecretStr = SecretStr(LOCAL_PLACEHOLDER)
    vtex_http_timeout_seconds: float = Field(default=10.0, gt=0)
    # Order reads per second on the vtex-api queue, enforced by the Temporal server across all workers
    # (VTEX allows about 100/s for OMS); the long jobs pace themselves at their own rates.
    vtex_requests_per_second: float = Field(default=50.0, gt=0)
    vtex_hook_secret: SecretStr = SecretStr(LOCAL_PLACEHOLDER)
    vtex_hook_previous_secret: SecretStr = SecretStr("")  # accepted alongside while the secret rotates
    vtex_hook_secret_header: str = "X-VTEX-Hook-Secret"
    vtex_hook_origin_key: str = ""  # when set, a hook's Origin.Key must equal it
    vtex_hook_url: str = "http://127.0.0.1:8000/webhooks/vtex/orders"  # what the hook config tells VTEX
    vtex_hook_reassert_interval_seconds: int = Field(default=12 * 3600, gt=0)  # VTEX drops idle hooks (3 d)
    vtex_reconcile_interval_seconds: int = Field(default=300, gt=0)  # Feed v3 catches missed hooks
    vtex_order_idle_close_seconds: int = Field(default=7 * 24 * 3600, gt=0)  # then the order workflow ends
    # Over 0: hooks of one order are gathered until none came for this long (a timer per batch). At 0,
    # each hook is handled as it comes, and hooks arriving while one lands are taken together.
    vtex_order_batch_window_seconds: float = Field(default=0.0, ge=0)
    vtex_order_final_linger_seconds: float = Field(default=300.0, ge=0)  # late hooks after invoiced/canceled
    vtex_order_events_per_run: int = Field(default=200, gt=0)  # then continue-as-new
    # What an order history backfill may use of VTEX's limit by default (`hub backfill orders --rate`).
    vtex_backfill_requests_per_second: float = Field(default=20.0, ge=LONG_JOB_MIN_RATE)
    # Catalog sync (Schedule vtex-catalog-sync): how often, and the catalog requests per second it may use
    # (VTEX allows about 250/s per catalog endpoint; each SKU takes two: its detail and its price).
    vtex_catalog_sync_interval_seconds: int = Field(default=6 * 3600, gt=0)
    vtex_catalog_requests_per_second: float = Field(default=100.0, ge=LONG_JOB_MIN_RATE)
    # Customer sync (Schedule vtex-customer-sync): how often, and how far back each run re-reads before
    # the last watermark, for documents whose update became searchable late.
    vtex_customer_sync_interval_seconds: int = Field(default=24 * 3600, gt=0)
    vtex_customer_sync_overlap_seconds: int = Field(default=600, ge=0)
    # The lead flow's changes (portal database) to bronze: every minute, re-reading 10 minutes back so a
    # transaction that committed late is still seen.
    lead_warehouse_sync_interval_seconds: int = Field(default=60, gt=0)
    lead_warehouse_sync_overlap_seconds: int = Field(default=600, ge=0)

    # Warehouse (BigQuery). An endpoint means a local emulator; empty means Google's BigQuery API.
    bigquery_project: str = "local-proj"
    bigquery_location: str = "US"
    bigquery_endpoint: str = "http://127.0.0.1:9050"
    # The emulator's Storage Write API (gRPC, host:port); used only with an endpoint above.
    bigquery_write_endpoint: str = "127.0.0.1:9060"
    bigquery_credentials_file: str = ""  # service-account JSON; empty uses application default credentials
    bigquery_dataset_prefix: str = ""
    # Cloud KMS key (projects/.../cryptoKeys/...) the datasets' tables are encrypted with; empty: Google's.
    bigquery_kms_key: str = ""  # "<prefix>bronze", "<prefix>silver", "<prefix>gold"
    bigquery_timeout_seconds: float = Field(default=30.0, gt=0)
    # Concurrent landings in one worker share an append: sent at this many rows or after this delay.
    warehouse_batch_rows: int = Field(default=500, gt=0)
    warehouse_batch_delay_seconds: float = Field(default=0.05, ge=0)
    # dbt (silver and gold): where builds keep dbt's target and logs.
    dbt_work_dir: str = "var/dbt"
    # The dbt/profiles.yml target; empty: "emulator" when bigquery_endpoint is set, else "bigquery".
    dbt_target: str = ""
    # The most one dbt query may bill on BigQuery (bytes; 0: no limit of the hub's own). A query over it
    # fails instead of running: a build that reads all of history by mistake costs nothing. The default,
    # 50 GiB, is far above an incremental build and above a full refresh of about 20 million orders.
    dbt_maximum_bytes_billed: int = Field(default=50 * 1024**3, ge=0)
    # The read API's customer and order views wait this long for the warehouse, then answer 503.
    read_api_warehouse_timeout_seconds: float = Field(default=5.0, gt=0)
    dbt_builds_enabled: bool = True  # off when silver and gold are built elsewhere
    # Landing orders ask for a build once no order landed for the quiet time, and at the latest this
    # interval after the oldest landing not asked for yet (per worker process; activities/dbt.py).
    dbt_orders_build_quiet_seconds: float = Field(default=5.0, ge=0)
    dbt_orders_build_interval_seconds: float = Field(default=30.0, ge=0)
    # The least time between the starts of two builds; requests meanwhile wait and coalesce. Each build
    # writes every model it builds, and BigQuery allows a table 1,500 writes a day (load, copy and query
    # jobs that append to or overwrite it): 60 s keeps a table within 1,440 builds a day, however steady
    # the landings (contracts/dbt_build.py).
    dbt_build_spacing_seconds: float = Field(default=60.0, ge=0)
    # A build holds a lease in the portal database (db/leases.py), renewed every quarter of this: a
    # retry of a build whose worker Temporal lost waits for it rather than build beside it. A build that
    # cannot renew it for three quarters of this stops. Longer: a worker that died outright blocks the
    # next build for longer; shorter: a slow database stops builds sooner.
    # (At least 60 s: the last quarter of it covers the 15 s a build told to stop has to exit.)
    dbt_build_lease_seconds: float = Field(default=120.0, ge=60)

    # Outbound calls in production (core/outbound.py): hosts allowed over plain http, and hosts allowed to
    # be internal addresses (private, loopback, link-local). Both empty: https to public hosts only.
    outbound_plain_http_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    outbound_private_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Outbound events (Standard Webhooks)
    event_subscribers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    event_signing_secret: SecretStr = SecretStr("whsec_bG9jYWwtZGV2LW9ubHktY2hhbmdlLW1lLXNpZ25pbmc=")

    # Worker: the task queues it polls (workers/main.py). flows: leads and opportunities; warehouse: VTEX
    # orders, the VTEX API queue, the syncs, the backfill and dbt; all: both in one process.
    worker_role: WorkerRole = "all"
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can scrape it
    worker_metrics_port: int = 9464  # 0 turns the metrics endpoint off
    # How often the worker asks Temporal for the gauges only it knows (leads waiting, freshness); 0: never.
    worker_metrics_poll_seconds: float = Field(default=30.0, ge=0)
    worker_max_concurrent_activities: int = Field(default=100, gt=0)
    # The event loop the worker's activities and the SDK's calls run on. uvloop takes about a tenth less
    # of the worker's CPU for the same tasks than asyncio's own loop (README, Benchmark: bench/loops.py);
    # asyncio is there to fall back on. Workflow code runs on the SDK's own loop either way.
    worker_event_loop: EventLoop = "uvloop"
    # On SIGTERM the worker stops polling and gives its running activities this long to finish before
    # it cancels them (Temporal then retries them elsewhere). The pod's or container's grace period
    # must be longer: compose's stop_grace_period and the k8s terminationGracePeriodSeconds are 45 s.
    worker_graceful_shutdown_seconds: float = Field(default=30.0, ge=0)
    # Workflow runs a worker keeps in memory between their tasks (Temporal's sticky cache), per task queue
    # (vtex-orders has its own, below): about 55 KiB each for a waiting lead (README, Benchmark). An
    # evicted run replays its history at its next task.
    worker_max_cached_workflows: int = Field(default=1000, ge=0)
    # The vtex-orders queue's own cache, the same size by default. An order's run lives a week past its last
    # change (5 minutes once invoiced or canceled), so in a steady flow the cache holds idle runs,
    # 100-150 KiB each (README, Benchmark): a smaller
    # one saves that memory, but a burst of more new orders than it holds replays their runs between their
    # hooks (at 50 hooks/s with 250: 0.64x the orders sent, against 0.90x with 1,000). It also holds the
    # backfill's and the syncs' runs: evicted, each replays its history (a few thousand events at most).
    worker_max_cached_order_workflows: int = Field(default=1000, ge=0)
    # Workflow task polls each webhook-driven workflow worker (leads, opportunities, orders) keeps open,
    # half for workflows new to it: a burst of new orders starts dozens a second, too many for one poll.
    worker_workflow_task_polls: int = Field(default=10, ge=2)
    # Workflow tasks each worker (task queue) works on at once: the SDK's own default, and the size of its
    # pool of threads that run them (at least 2, and no more than the runs it caches). A lead's first
    # steps and its feedback run as local activities inside its task, which holds its place while they
    # wait on Zoho and the database. Fewer places let fewer runs into the worker at once, so fewer are in
    # memory at the peak; too few make a busy worker wait on slow partners (README, Benchmark).
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=2)

    @field_validator(
        "event_subscribers",
        "codec_server_cors_origins",
        "outbound_plain_http_hosts",
        "outbound_private_hosts",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Accept a comma-separated list as well as JSON.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator(
        "temporal_api_key", "codec_server_token", "zoho_webhook_secret", "zoho_webhook_previous_secret",
        "read_api_token", "metrics_token", "zoho_client_secret", "zoho_refresh_token", "smtp_password",
        "vtex_app_token", "vtex_hook_secret", "vtex_hook_previous_secret", "event_signing_secret",
    )  # fmt: skip
    @classmethod
    def _secret_as_pasted(cls, value: SecretStr) -> SecretStr:
        return sendable_secret(value)

    @field_validator("database_url", "zoho_client_id", "vtex_app_key")
    @classmethod
    def _value_as_pasted(cls, value: str) -> str:
        # Credentials too (the database's password in its URL; VTEX's key goes in a header as is).
        return sendable_secret(SecretStr(value)).get_secret_value()

    @field_validator("dealer_api_keys", "dealer_webhook_secrets", "dealer_webhook_previous_secrets")
    @classmethod
    def _secrets_as_pasted(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return {dealer: sendable_secret(secret) for dealer, secret in value.items()}

    @field_validator("payload_keys", mode="before")
    @classmethod
    def _split_payload_keys(cls, value: object) -> object:
        # "id:base64key,id2:base64key" (base64 has no ":" or ","), or a JSON object like the dealer keys.
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("{"):
            return json.loads(value)
        keys: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            key_id, separator, key = item.partition(":")
            if not separator or not key_id.strip():
                raise ValueError("payload keys are written id:base64key, separated by commas")
            keys[key_id.strip()] = key.strip()
        return keys

    @field_validator("payload_keys")
    @classmethod
    def _payload_keys_are_aes_256(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for key_id, key in value.items():
            decode_key(key_id, key.get_secret_value())
        return value

    @field_validator("business_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    # The TLS section and gRPC metadata of Temporal's client configuration, when it has them.
    _temporal_profile_tls: ClientConfigTLS | None = PrivateAttr(default=None)
    _temporal_rpc_metadata: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> Settings:
        self._apply_temporal_client_config()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.state_dir / 'portal.db'}"
        for certificate, key in (
            ("api_tls_cert_file", "api_tls_key_file"),
            ("temporal_tls_cert_file", "temporal_tls_key_file"),
        ):
            if bool(getattr(self, certificate)) != bool(getattr(self, key)):
                raise ValueError(f"{certificate} and {key} go together: set both or neither")
        if self.environment == "production":
            problems = self._production_problems()
            if problems:
                raise ValueError("refused in production: " + "; ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        """What production refuses in these settings, for the process they are loaded in (the hub
        command by default; the API, workers and codec server load a subclass that names theirs)."""
        from core.production import SUPPORT_NEEDS, production_problems  # it reads these settings

        return production_problems(self, SUPPORT_NEEDS)

    def _apply_temporal_client_config(self) -> None:
        profile = ClientConfigProfile.load() if self.temporal_client_config else ClientConfigProfile()
        self.temporal_address = self.temporal_address or profile.address or DEFAULT_TEMPORAL_ADDRESS
        self.temporal_namespace = self.temporal_namespace or profile.namespace or "default"
        if not self.temporal_api_key.get_secret_value() and profile.api_key:
            try:  # Temporal's own setting (TEMPORAL_API_KEY, or its profile), so named here
                self.temporal_api_key = sendable_secret(SecretStr(profile.api_key))
            except ValueError as error:
                raise ValueError(f"TEMPORAL_API_KEY {error}") from None
        self._temporal_profile_tls = profile.tls
        self._temporal_rpc_metadata = dict(profile.grpc_meta)

    @property
    def temporal_tls_given(self) -> bool:
        """Whether a HUB_TEMPORAL_TLS* setting decides TLS (else Temporal's client configuration may)."""
        files = (self.temporal_tls_ca_file, self.temporal_tls_cert_file, self.temporal_tls_key_file)
        return self.temporal_tls or any(files) or bool(self.temporal_tls_server_name)

    @property
    def temporal_profile_tls(self) -> ClientConfigTLS | None:
        """The TLS section of Temporal's client configuration (None: it has none)."""
        return self._temporal_profile_tls

    @property
    def temporal_rpc_metadata(self) -> dict[str, str]:
        """gRPC metadata Temporal's client configuration sends with every call."""
        return dict(self._temporal_rpc_metadata)

    def check_outbound_url(self, url: str) -> None:
        """Raise :class:`core.outbound.RefusedUrl` for a URL the hub may not call in this environment."""
        check_url(
            url,
            production=self.environment == "production",
            plain_http_hosts=self.outbound_plain_http_hosts,
            private_hosts=self.outbound_private_hosts,
        )

    def outbound_rules(self) -> AddressRules:
        """What :meth:`check_outbound_url` says of addresses, for :class:`clients.pinned.PinnedTransport`
        to apply as each connection opens."""
        return AddressRules(
            production=self.environment == "production",
            private_hosts=frozenset(host.lower() for host in self.outbound_private_hosts),
        )

    @model_validator(mode="after")
    def _payload_key_ring(self) -> Settings:
        if not self.payload_keys:  # local and test runs; production refuses it (core/production.py)
            self.payload_keys = {LOCAL_PAYLOAD_KEY_ID: SecretStr(LOCAL_PAYLOAD_KEY)}
        if not self.payload_active_key and len(self.payload_keys) == 1:
            self.payload_active_key = next(iter(self.payload_keys))
        if self.payload_active_key not in self.payload_keys:
            known = ", ".join(sorted(self.payload_keys))
            raise ValueError(f"HUB_PAYLOAD_ACTIVE_KEY must name one of the payload keys ({known})")
        return self


class ApiSettings(Settings):
    """The API's settings: in production it needs the webhooks' and the read API's secrets, and no
    partner's credentials (it calls no partner): ``core.production.API_NEEDS``."""

    def _production_problems(self) -> list[str]:
        from core.production import API_NEEDS, production_problems

        return production_problems(self, API_NEEDS)


class WorkerSettings(Settings):
    """A worker's settings: in production it needs the credentials of the partners its role calls
    (``core.production.WORKER_NEEDS``), and no webhook's secret."""

    def _production_problems(self) -> list[str]:
        from core.production import WORKER_NEEDS, production_problems

        return production_problems(self, WORKER_NEEDS[self.worker_role])


class MigrationSettings(Settings):
    """The portal migration's settings: in production it needs the database alone."""

    def _production_problems(self) -> list[str]:
        from core.production import MIGRATION_NEEDS, production_problems

        return production_problems(self, MIGRATION_NEEDS)


class CodecServerSettings(Settings):
    """The codec server's settings: in production it needs its key ring and its token only, and its pod
    is given nothing else (no partner's credentials, no database): ``codec_server_problems``."""

    def _production_problems(self) -> list[str]:
        from core.production import codec_server_problems

        return codec_server_problems(self)


@lru_cache
def get_settings(kind: type[Settings] = Settings) -> Settings:
    """The process-wide settings, read once, as ``kind`` checks them (the process's own subclass)."""
    return kind()
