"""calsync's data layer: typed SQLAlchemy models, sessions, migrations and read queries.

`models` imports only `core` and `rules` (tests/test_layers.py keeps it so).
"""

from models.accounts import AccountState, GoogleAccount
from models.alerts import AlertDelivery, AlertIncident
from models.audits import Audit, AuditOutcome
from models.base import Base, utcnow
from models.calendars import Calendar, Channel, SyncState
from models.events import BusyBlock, CalendarEvent
from models.fleet_counts import FleetCount
from models.hosts import Host, ManualBlock, SignInLink, UsedOAuthState
from models.outbound import (
    AnnouncedCalendarState,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.sync_runs import SyncKind, SyncOutcome, SyncRun, SyncRunRecord

__all__ = [
    "AccountState",
    "AlertDelivery",
    "AlertIncident",
    "AnnouncedCalendarState",
    "Audit",
    "AuditOutcome",
    "Base",
    "BusyBlock",
    "Calendar",
    "CalendarEvent",
    "Channel",
    "FleetCount",
    "GoogleAccount",
    "Host",
    "ManualBlock",
    "OutboxEvent",
    "SignInLink",
    "SyncKind",
    "SyncOutcome",
    "SyncRun",
    "SyncRunRecord",
    "SyncState",
    "UsedOAuthState",
    "WebhookDelivery",
    "WebhookEndpoint",
    "utcnow",
]
