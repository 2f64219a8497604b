"""Realistic Brazilian car-dealership leads in Zoho CRM's field names, reproducible from a seed."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

BRT = timezone(timedelta(hours=-3), "BRT")
ZOHO_ORG_PREFIX = "5725767"
MODELS = ("Onix", "Tracker", "Spin", "S10", "Montana", "Equinox")


@dataclass(frozen=True)
class City:
    """A city leads come from, with the phone area code and postal-code range that belong to it."""

    name: str
    ddd: str
    cep_low: int
    cep_high: int


CITIES: dict[str, tuple[City, ...]] = {
    "SP": (
        City("São Paulo", "11", 1000000, 5999999),
        City("Campinas", "19", 13000000, 13139999),
        City("Santos", "13", 11000000, 11099999),
    ),
    "RJ": (City("Rio de Janeiro", "21", 20000000, 23799999), City("Niterói", "21", 24000000, 24399999)),
    "MG": (City("Belo Horizonte", "31", 30000000, 31999999), City("Uberlândia", "34", 38400000, 38415999)),
    "PR": (City("Curitiba", "41", 80000000, 82999999), City("Londrina", "43", 86000000, 86099999)),
    "RS": (City("Porto Alegre", "51", 90000000, 91999999), City("Caxias do Sul", "54", 95000000, 95124999)),
}
# Roughly the share of each state in a national lead flow: São Paulo dominates.
STATE_WEIGHTS = {"SP": 45, "RJ": 20, "MG": 15, "PR": 10, "RS": 10}

FIRST_NAMES = (
    "Ana", "Maria", "Juliana", "Fernanda", "Camila", "Beatriz", "Larissa", "Patrícia", "Luciana", "Conceição",
    "João", "José", "Carlos", "Paulo", "Lucas", "Rafael", "Gustavo", "Thiago", "Antônio", "Márcio",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
    "Costa", "Ribeiro", "Martins", "Carvalho", "Araújo", "Melo", "Barbosa", "Rocha", "Dias", "Conceição",
)  # fmt: skip
LEAD_SOURCES = ("Website", "Facebook", "Google AdWords", "Chat", "Advertisement", "External Referral")
# Reserved domains (RFC 2606): generated addresses can never reach a real mailbox.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
OWNERS = (
    {"id": "5725767000000318001", "name": "Renata Moreira", "email": "renata.moreira@example.com"},
    {"id": "5725767000000318002", "name": "Eduardo Nogueira", "email": "eduardo.nogueira@example.com"},
    {"id": "5725767000000318004", "name": "Patrícia Lemos", "email": "patricia.lemos@example.com"},
)
# The API user the project's updates are made as.
INTEGRATION_USER = {"id": "5725767000000318003", "name": "Integration", "email": "integration@example.com"}


def zoho_timestamp(moment: datetime) -> str:
    """Format a moment the way Zoho CRM does: ISO 8601, seconds, Brasília offset.

    Args:
        moment: An aware datetime.

    Returns:
        A string such as ``2026-11-24T09:15:00-03:00``.
    """
    return moment.astimezone(BRT).isoformat(timespec="seconds")


def generate_lead(
    rng: random.Random | int | None = None,
    *,
    lead_id: str | None = None,
    now: datetime | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Make one lead record as Zoho CRM's REST API would return it.

    Args:
        rng: A random generator or a seed; the same seed and ``now`` give the same lead.
        lead_id: The record id; a random 19-digit Zoho-style id when omitted.
        now: The moment the lead is generated; it was created up to three days before.
        overrides: Fields to set on the generated record (Zoho field names).

    Returns:
        The lead, with ``id, First_Name, Last_Name, Email, Phone, Mobile, Company, State, City, Zip_Code,
        Lead_Source, Lead_Status, Owner, Created_Time, Modified_Time, Modelo_de_Interesse``.
    """
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    state = rng.choices(list(STATE_WEIGHTS), weights=list(STATE_WEIGHTS.values()))[0]
    city = rng.choice(CITIES[state])
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    created = (now or datetime.now(BRT)) - timedelta(minutes=rng.randint(0, 3 * 24 * 60))
    cep = f"{rng.randint(city.cep_low, city.cep_high):08d}"
    lead: dict[str, Any] = {
        "id": lead_id or f"{ZOHO_ORG_PREFIX}{rng.randrange(10**11, 10**12)}",
        "First_Name": first,
        "Last_Name": last,
        "Email": f"{ascii_lower(first)}.{ascii_lower(last)}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}",
        "Phone": f"+55 {city.ddd} 3{rng.randint(0, 999):03d}-{rng.randint(0, 9999):04d}",
        "Mobile": f"+55 {city.ddd} 9{rng.randint(6000, 9999)}-{rng.randint(0, 9999):04d}",
        # Zoho makes Company mandatory on Leads; retail buyers get the usual placeholder.
        "Company": "Pessoa Física" if rng.random() < 0.85 else f"{last} Transportes Ltda",
        "State": state,
        "City": city.name,
        "Zip_Code": f"{cep[:5]}-{cep[5:]}",
        "Lead_Source": rng.choice(LEAD_SOURCES),
        "Lead_Status": "Not Contacted",
        "Owner": dict(rng.choice(OWNERS)),
        "Created_Time": zoho_timestamp(created),
        "Modified_Time": zoho_timestamp(created),
        "Modelo_de_Interesse": rng.choice(MODELS),
    }
    lead.update(overrides or {})
    return lead


def generate_leads(count: int, seed: int = 0, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Make ``count`` leads from one seed.

    Args:
        count: How many leads.
        seed: The seed; the same seed and ``now`` give the same list.
        now: The moment the leads are generated.

    Returns:
        The leads, each as :func:`generate_lead` makes it.
    """
    rng = random.Random(seed)
    return [generate_lead(rng, now=now) for _ in range(count)]


def ascii_lower(text: str) -> str:
    """Text without accents, in lower case, for made-up email addresses."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).lower()
