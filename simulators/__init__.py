"""Stand-ins for the external SaaS (Zoho CRM, VTEX, dealer CRMs, event subscribers), in their real shapes."""

from simulators.app import create_app
from simulators.config import SimulatorConfig
from simulators.deals import generate_deal, generate_deals
from simulators.leads import generate_lead, generate_leads
from simulators.state import SimulatorState, app_state
from simulators.vtex_orders import generate_order
from simulators.zoho_deals import deal_webhook_fields

__all__ = [
    "SimulatorConfig",
    "SimulatorState",
    "app_state",
    "create_app",
    "deal_webhook_fields",
    "generate_deal",
    "generate_deals",
    "generate_lead",
    "generate_leads",
    "generate_order",
]
