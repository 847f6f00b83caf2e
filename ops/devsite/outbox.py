"""The outbox: every e-mail `bookingflow dev` would have sent. Without SMTP_URL they are kept in the
outbox table and only logged; this page reads them there."""

from __future__ import annotations

from html import escape

from flask import Blueprint, abort

from bookingflow import settings as settings_module
from models.tables import Outbox
from ops.devsite.html import page, table, when


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/dev/outbox", "outbox", outbox_page)
    bp.add_url_rule("/dev/outbox/<int:row_id>", "email", email_page)


def _status(row: Outbox) -> str:
    if row.withheld_at:
        return f"withheld: {row.withheld_reason or ''}"
    if row.sent_at:
        # Without SMTP_URL the mailer only logs an e-mail, and the row is done with all the same.
        return "sent" if settings_module.get().smtp_url else "not sent: SMTP_URL is unset"
    return "waiting"


def outbox_page():
    rows = [[when(row.created_at), escape(row.kind), escape(row.recipient),
             f'<a href="/dev/outbox/{row.id}">{escape(row.subject)}</a>', escape(_status(row)),
             f'<a href="/dev/bookings/{escape(row.booking_id)}">booking</a>' if row.booking_id else ""]
            for row in Outbox.select().order_by(Outbox.created_at.desc(), Outbox.id.desc())]
    body = table(["written", "kind", "to", "subject", "status", ""], rows) if rows else "<p>No e-mails yet.</p>"
    return page("Outbox", body)


def email_page(row_id: int):
    row = Outbox.get_or_none(Outbox.id == row_id)
    if row is None:
        abort(404)
    head = table(["", ""], [["to", escape(row.recipient)], ["subject", escape(row.subject)],
                            ["written", when(row.created_at)], ["status", escape(_status(row))]])
    return page("E-mail", f'{head}<pre id="body">{escape(row.body)}</pre>')
