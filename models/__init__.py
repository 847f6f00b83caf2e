"""Peewee models, the database handle and the booking state machine."""

from models.db import database, open_database, utcnow
from models.tables import Booking, ProviderEvent, SessionType, Transition

__all__ = ["Booking", "ProviderEvent", "SessionType", "Transition", "database", "open_database", "utcnow"]
