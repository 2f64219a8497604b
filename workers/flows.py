"""The ``flows`` role: lead distribution and opportunity sync, the Zoho and dealer CRM side.

Its process loads the portal database, Zoho and the dealer CRM clients; no BigQuery client, pyarrow or
dbt. It polls the ``leads`` and ``opportunities`` task queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.leads import LeadActivities
from activities.opportunities import OpportunityActivities
from clients.adf import AdfDealerCrm, SmtpRelay
from clients.bounded import answer_hooks
from clients.dealer_crm import RestDealerCrm, SoapDealerCrm
from clients.pinned import PinnedTransport
from clients.subscribers import EventPublisher
from clients.zoho import ZohoClient
from core.background import in_background
from core.metrics import (
    EVENTS_PARKED,
    EVENTS_REFUSED,
    LEADS_SLA_EXHAUSTED,
    ZOHO_WRITEBACKS_DROPPED,
    ZOHO_WRITEBACKS_PARKED,
    ZOHO_WRITEBACKS_REFUSED,
    start_at_zero,
)
from core.outbound import origin
from core.settings import Settings
from db import refused_events, zoho_writebacks
from db.engine import engine_for, session_factory
from db.tokens import DatabaseTokens
from workers.options import shutdown_options, webhook_queue_polling, workflow_options
from workflows.event_redrive import EventRedriveWorkflow
from workflows.lead_distribution import LeadDistributionWorkflow
from workflows.opportunity_sync import OpportunitySyncWorkflow
from workflows.zoho_writeback import ZohoWritebackWorkflow

WORKFLOWS: tuple[type, ...] = (
    LeadDistributionWorkflow,
    OpportunitySyncWorkflow,
    ZohoWritebackWorkflow,
    EventRedriveWorkflow,
)

log = logging.getLogger(__name__)
# What a SOAP delivery attempt keeps beyond its calls (the dealer's row, the WSDL, the database writes).
SOAP_ATTEMPT_MARGIN_SECONDS = 5.0


def soap_retry_pause(settings: Settings) -> float:
    """How long a retried SOAP create waits before its lookup (``SoapDealerCrm``): a call's time, less
    where the attempt would then have no time left for its lookup and create (two calls) and a margin."""
    call = settings.dealer_http_timeout_seconds
    left = settings.dealer_delivery_attempt_timeout_seconds - 2 * call - SOAP_ATTEMPT_MARGIN_SECONDS
    return max(0.0, min(call, left))


async def prepare(client: Client, settings: Settings) -> None:
    """Nothing to set up before this role's workers start."""


@asynccontextmanager
async def open_workers(client: Client, settings: Settings) -> AsyncIterator[list[Worker]]:
    """The role's workers with their clients (built once per process), closed again on exit."""
    # Their alerts count increases from the first.
    refused_events = [(EVENTS_REFUSED, (origin(url),)) for url in settings.event_subscribers]
    start_at_zero(
        [
            (LEADS_SLA_EXHAUSTED, ("leads",)),
            (ZOHO_WRITEBACKS_REFUSED, ("leads",)),
            (ZOHO_WRITEBACKS_DROPPED, ("leads",)),
            *refused_events,
        ]
    )
    engine = engine_for(settings)
    answers = answer_hooks(settings.partner_answer_max_bytes)
    http = httpx.AsyncClient(timeout=settings.dealer_http_timeout_seconds, event_hooks=answers)
    # Dealer URLs come from the dealers' YAML and their WSDLs: their connections go only to addresses
    # checked as they open (a name cannot pass the URL check and then resolve to an internal address).
    rules = settings.outbound_rules()
    dealer_http = httpx.AsyncClient(
        timeout=settings.dealer_http_timeout_seconds, transport=PinnedTransport(rules), event_hooks=answers
    )
    api_keys = {dealer: key.get_secret_value() for dealer, key in settings.dealer_api_keys.items()}
    rest = RestDealerCrm(dealer_http, api_keys, settings.check_outbound_url)
    soap = SoapDealerCrm(
        settings.dealer_http_timeout_seconds,
        api_keys,
        settings.check_outbound_url,
        rules,
        answer_limit=settings.partner_answer_max_bytes,
        retry_pause_seconds=soap_retry_pause(settings),
    )
    smtp = SmtpRelay(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_sender,
        starttls=settings.smtp_starttls,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        timeout_seconds=settings.dealer_http_timeout_seconds,
    )
    adf = AdfDealerCrm(dealer_http, smtp, settings.check_outbound_url)
    sessions = session_factory(engine)
    zoho = ZohoClient(http, settings, DatabaseTokens(sessions))
    leads = LeadActivities(
        sessions=sessions,
        zoho=zoho,
        dealer_crms={"rest": rest, "soap": soap, "adf": adf},
        publisher=EventPublisher(http, settings.event_signing_secret.get_secret_value()),
        subscribers=list(settings.event_subscribers),
        business_timezone=settings.business_timezone,
    )
    opportunities = OpportunityActivities(sessions, zoho)
    polling = webhook_queue_polling(settings)
    # The gauge is served with the worker's metrics: without their endpoint, nothing reads it.
    every = settings.worker_metrics_poll_seconds if settings.worker_metrics_port else 0
    counting = in_background(count_parked(sessions, every)) if every else contextlib.nullcontext()
    try:
        workers = [
            Worker(
                client,
                task_queue=settings.leads_task_queue,
                workflows=[LeadDistributionWorkflow, ZohoWritebackWorkflow, EventRedriveWorkflow],
                **workflow_options(settings, settings.worker_max_cached_workflows),
                **polling,
                activities=[
                    leads.record_lead_status,
                    leads.fetch_lead,
                    leads.route_lead,
                    leads.claim_lead,
                    leads.assign_lead,
                    leads.reassign_lead,
                    leads.lookup_dealer,
                    leads.deliver_lead,
                    leads.update_zoho_lead,
                    leads.redrive_zoho_writeback,
                    leads.publish_event,
                    leads.redrive_event,
                    leads.follow_plan,
                    leads.poll_dealer_status,
                    leads.withdraw_lead,
                    leads.withdraw_at_dealer,
                ],
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                # The lead's first steps and its feedback run as local activities: as many at once, on
                # the same database pool and partners.
                max_concurrent_local_activities=settings.worker_max_concurrent_activities,
                **shutdown_options(settings),
            ),
            Worker(
                client,
                task_queue=settings.opportunities_task_queue,
                workflows=[OpportunitySyncWorkflow],
                **workflow_options(settings, settings.worker_max_cached_workflows),
                **polling,
                activities=[opportunities.fetch_deal, opportunities.apply_deal_change],
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                **shutdown_options(settings),
            ),
        ]
        async with counting:
            yield workers
    finally:
        await soap.aclose()
        await dealer_http.aclose()
        await http.aclose()
        await engine.dispose()


async def count_parked(sessions: async_sessionmaker[AsyncSession], every_seconds: float) -> None:
    """Keep ``hub_zoho_writebacks_parked`` and ``hub_events_parked`` current: only the portal database
    knows them (their alerts fire while any lead's write-back or event waits)."""
    while True:
        try:
            ZOHO_WRITEBACKS_PARKED.set(await zoho_writebacks.count(sessions))
            EVENTS_PARKED.set(await refused_events.count(sessions))
        except SQLAlchemyError as error:  # the database away: the gauges keep their values
            log.warning("parked write-backs and events not counted: %s", type(error).__name__)
        await asyncio.sleep(every_seconds)
