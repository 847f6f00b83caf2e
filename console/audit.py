"""The audit of the console: every action recorded with who, when, what and why, and what came of it."""

from __future__ import annotations

from models.tables import AuditEntry


def record(operator: str, action: str, reason: str, outcome: str, booking_id: str | None = None,
           subject: str | None = None) -> AuditEntry:
    return AuditEntry.create(operator=operator[:100], action=action, booking_id=booking_id,
                             subject=(subject or "")[:255] or None, reason=reason[:500], outcome=outcome[:300])


def of_booking(booking_id: str) -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.booking_id == booking_id).order_by(AuditEntry.at, AuditEntry.id))


def latest(limit: int = 100) -> list[AuditEntry]:
    return list(AuditEntry.select().order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))
