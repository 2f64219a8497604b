"""What production refuses in the settings: local secrets and keys, empty secrets, local endpoints.

The local stack and docker-compose run on placeholder secrets (``local-dev-only-change-me``, the compose
file's ``local-key-*`` dealer keys, the simulators' app key) and on the simulators' and emulator's
plain-http loopback URLs. Any of them in production means a deployment that forgot a setting: the
settings refuse to load, naming each one (never its value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from core.codec import LOCAL_PAYLOAD_KEY
from core.outbound import RefusedUrl

if TYPE_CHECKING:
    from core.settings import Settings

# Values only the local stack uses: a secret containing one of them was never set for real.
LOCAL_MARKERS = ("local-dev-only", "local-key-", "change-me")
# Secrets that may be empty (the codec server refuses to start without its token itself; SMTP may need no
# login; no rotation under way), but never a placeholder copied from an example.
OPTIONAL_SECRETS = (
    "zoho_webhook_previous_secret",
    "vtex_hook_previous_secret",
    "temporal_api_key",
    "codec_server_token",
    "smtp_password",
)
DEALER_SECRETS = ("dealer_api_keys", "dealer_webhook_secrets", "dealer_webhook_previous_secrets")
LOCAL_IDENTIFIERS = {"zoho_client_id": "local-client", "vtex_app_key": "vtexappkey-localstore-LOCAL"}


@dataclass(frozen=True)
class Needs:
    """What one kind of process uses, which production requires it to be given: secrets (by setting
    name), per-dealer secrets, partner identifiers, the payload key ring (it reads or writes Temporal
    payloads), ADF e-mail. A secret it does not use need not be set, and its pod is not given it
    (deploy/k8s): an API replica, which faces the internet, holds no partner's credentials."""

    secrets: frozenset[str] = frozenset()
    dealer_secrets: frozenset[str] = frozenset()
    identifiers: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()  # secrets it reads where set (a rotation's previous one)
    payloads: bool = False
    mail: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.secrets | other.secrets,
            self.dealer_secrets | other.dealer_secrets,
            self.identifiers | other.identifiers,
            self.optional | other.optional,
            self.payloads or other.payloads,
            self.mail or other.mail,
        )


# The API checks webhooks and serves reads; it calls no partner.
API_NEEDS = Needs(
    secrets=frozenset({"zoho_webhook_secret", "vtex_hook_secret", "read_api_token", "metrics_token"}),
    dealer_secrets=frozenset({"dealer_webhook_secrets"}),
    optional=frozenset(
        {"zoho_webhook_previous_secret", "vtex_hook_previous_secret", "dealer_webhook_previous_secrets"}
    ),
    payloads=True,
)
# The flows worker reads and writes Zoho, delivers to dealers' CRMs and inboxes, signs events.
FLOWS_NEEDS = Needs(
    secrets=frozenset({"zoho_client_secret", "zoho_refresh_token", "event_signing_secret"}),
    dealer_secrets=frozenset({"dealer_api_keys"}),
    identifiers=frozenset({"zoho_client_id"}),
    optional=frozenset({"smtp_password"}),
    payloads=True,
    mail=True,
)
# The warehouse worker reads VTEX and registers VTEX's order hook, with the secret its calls carry.
WAREHOUSE_NEEDS = Needs(
    secrets=frozenset({"vtex_app_token", "vtex_hook_secret"}),
    identifiers=frozenset({"vtex_app_key"}),
    payloads=True,
)
WORKER_NEEDS = {"flows": FLOWS_NEEDS, "warehouse": WAREHOUSE_NEEDS, "all": FLOWS_NEEDS | WAREHOUSE_NEEDS}
SUPPORT_NEEDS = Needs(payloads=True)  # the hub command: the database, Temporal, and its payloads
MIGRATION_NEEDS = Needs()  # the portal's schema migration: the database alone
EVERY_SECRET = (API_NEEDS | FLOWS_NEEDS | WAREHOUSE_NEEDS).secrets


def production_problems(settings: Settings, needs: Needs) -> list[str]:
    """Every reason these settings cannot run a process that ``needs`` so in production; empty when
    they can."""
    return [
        *_secret_problems(settings, needs),
        *_database_problems(settings),
        *_endpoint_problems(settings),
    ]


def codec_server_problems(settings: Settings) -> list[str]:
    """Every reason these settings cannot run the codec server in production. It decrypts with the key
    ring for the Web UI and calls nothing (no partner, no database, no Temporal), so it is given its
    keys and its token only: a pod that decrypts customers' payloads holds no partner's credentials."""
    problems = _payload_key_problems(settings)
    token = settings.codec_server_token.get_secret_value()
    if not token:
        problems.append("codec_server_token is empty: the codec server would decrypt for anyone")
    elif _is_local("codec_server_token", token, settings):
        problems.append("codec_server_token is a local placeholder")
    return problems


def _payload_key_problems(settings: Settings) -> list[str]:
    problems = []
    if not settings.payload_encryption:
        problems.append("payload_encryption is off: histories would hold customer data in clear text")
    if not settings.payload_keys:
        problems.append("payload_keys is empty: encrypt payloads with keys of your own (HUB_PAYLOAD_KEYS)")
    for key_id, key in settings.payload_keys.items():
        if key.get_secret_value() == LOCAL_PAYLOAD_KEY:
            problems.append(f"payload_keys[{key_id}] is the local development key")
    return problems


def _database_problems(settings: Settings) -> list[str]:
    """Every API replica and worker must share one PostgreSQL: the local SQLite file is one machine's,
    and a password copied from an example was never set for real."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return [
            "database_url is the local SQLite file: set HUB_DATABASE_URL to the PostgreSQL all processes use"
        ]
    try:
        password = unquote(urlsplit(url).password or "")
    except ValueError:  # not a URL urllib reads (SQLAlchemy reads more): the engine judges it
        return []
    if any(marker in password for marker in LOCAL_MARKERS):
        return ["database_url's password is a local placeholder"]
    return []


def _secret_problems(settings: Settings, needs: Needs) -> list[str]:
    """Secrets the process needs that are empty; any secret given that is a placeholder."""
    problems = []
    for name in sorted(EVERY_SECRET | set(OPTIONAL_SECRETS)):
        value = getattr(settings, name).get_secret_value()
        if name not in needs.secrets and value == _default(settings, name):
            continue  # not given to this process: it does not use it
        if not value and name in needs.secrets:
            problems.append(f"{name} is empty")
        elif value and _is_local(name, value, settings):
            problems.append(f"{name} is a local placeholder")
    for name in DEALER_SECRETS:
        for dealer, key in getattr(settings, name).items():
            if not key.get_secret_value():
                if name in needs.dealer_secrets:
                    problems.append(f"{name}[{dealer}] is empty")
            elif _is_local(name, key.get_secret_value(), settings):
                problems.append(f"{name}[{dealer}] is a local placeholder")
    if settings.temporal_api_key.get_secret_value() and _temporal_tls_disabled(settings):
        problems.append("temporal_api_key is set but TLS to Temporal is disabled: it would cross in clear")
    if needs.mail and not settings.smtp_starttls:
        problems.append("smtp_starttls is off: ADF lead e-mails would cross the network in clear text")
    if needs.payloads:
        problems += _payload_key_problems(settings)
    for name, local in LOCAL_IDENTIFIERS.items():
        value = getattr(settings, name)
        if value == local and name in needs.identifiers:
            problems.append(f"{name} is the local stack's {local!r}")
        elif any(marker in value for marker in LOCAL_MARKERS):  # copied from secrets.env.example
            problems.append(f"{name} is a local placeholder")
    return problems


def _temporal_tls_disabled(settings: Settings) -> bool:
    """Whether Temporal's client configuration turns TLS off (TEMPORAL_TLS=false, ``tls.disabled``)
    and no HUB_TEMPORAL_TLS* setting turns it back on."""
    profile_tls = settings.temporal_profile_tls
    return not settings.temporal_tls_given and profile_tls is not None and profile_tls.disabled is True


def _is_local(name: str, value: str, settings: Settings) -> bool:
    return value == _default(settings, name) or any(marker in value for marker in LOCAL_MARKERS)


def _default(settings: Settings, name: str) -> str:
    default = type(settings).model_fields[name].default
    return str(default.get_secret_value() if isinstance(default, SecretStr) else default)


def _endpoint_problems(settings: Settings) -> list[str]:
    urls = {
        "zoho_api_base_url": settings.zoho_api_base_url,
        "zoho_accounts_url": settings.zoho_accounts_url,
        "vtex_api_base_url": settings.vtex_api_base_url,
        "vtex_hook_url": settings.vtex_hook_url,  # VTEX calls it: a public https URL
        **{f"event_subscribers[{i}]": url for i, url in enumerate(settings.event_subscribers)},
    }
    if settings.bigquery_endpoint:  # empty is Google's API; anything else must pass like any partner
        urls["bigquery_endpoint"] = settings.bigquery_endpoint
    problems = []
    for name, url in urls.items():
        try:
            settings.check_outbound_url(url)
        except RefusedUrl as refused:
            problems.append(f"{name}: {refused}")
    return problems


def api_tls_problem(settings: Settings) -> str:
    """Why the API may not serve in this environment without TLS, or ``""``: checked where it starts."""
    if settings.environment != "production" or settings.api_behind_tls_proxy or settings.api_tls_cert_file:
        return ""
    return (
        "the API refuses to serve without TLS in production: set HUB_API_TLS_CERT_FILE and"
        " HUB_API_TLS_KEY_FILE, or HUB_API_BEHIND_TLS_PROXY=true when a proxy in front terminates TLS"
    )
