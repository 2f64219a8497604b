"""Stand-ins for the external SaaS (Zoho CRM, dealer CRMs, event subscribers) speaking their real shapes."""

from simulators.app import create_app
from simulators.config import SimulatorConfig
from simulators.leads import generate_lead, generate_leads
from simulators.state import SimulatorState, app_state

__all__ = ["SimulatorConfig", "SimulatorState", "app_state", "create_app", "generate_lead", "generate_leads"]
