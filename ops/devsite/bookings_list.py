"""The bookings as the dev pages list them, newest first, each with its status and control pages."""

from __future__ import annotations

from html import escape

from flask import Blueprint

from models.tables import Booking, SessionType
from ops.devsite.html import money, page, table, when


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/dev/bookings", "bookings", all_bookings)


def latest_table(limit: int | None) -> str:
    query = (Booking.select(Booking, SessionType).join(SessionType, on=Booking.session_type)
             .order_by(Booking.created_at.desc(), Booking.id))
    rows = [[when(b.created_at), f"<code>{escape(b.state)}</code>", escape(b.session_type.name),
             money(b.amount, b.currency),
             f'<a href="/dev/bookings/{escape(b.id)}">control</a> · <a href="/bookings/{escape(b.id)}">status page</a>']
            for b in (query.limit(limit) if limit else query)]
    if not rows:
        return '<p>No bookings yet: <a href="/client/">book one</a>.</p>'
    return table(["created", "state", "session type", "amount", ""], rows)


def all_bookings():
    return page("Bookings", latest_table(None))
