"""`bookingflow outbox list|show`: the e-mails to clients as the outbox keeps them (jobs/outbox.py sends
them; without SMTP_URL, as in `bookingflow dev`, they stay here to be read)."""

from __future__ import annotations

from bookingflow.privacy import mask_email
from models.tables import Outbox
from ops.columns import print_table

HEADERS = ("ID", "CREATED", "BOOKING", "KIND", "STATUS", "TO", "SUBJECT")


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def status(mail: Outbox) -> str:
    if mail.sent_at:
        return f"sent {_when(mail.sent_at)}"
    if mail.withheld_at:
        return "withheld"
    return f"waiting ({mail.attempts} attempt(s))" if mail.attempts else "waiting"


def list_emails(limit: int, booking_id: str | None = None) -> int:
    query = Outbox.select().order_by(Outbox.created_at.desc(), Outbox.id.desc()).limit(limit)
    if booking_id:
        query = query.where(Outbox.booking == booking_id)
    print_table(HEADERS, ([mail.id, _when(mail.created_at), mail.booking_id, mail.kind, status(mail),
                           mask_email(mail.recipient), mail.subject] for mail in query), "no e-mails")
    return 0


def show_email(mail_id: int) -> int:
    mail = Outbox.get_or_none(Outbox.id == mail_id)
    if mail is None:
        print(f"no e-mail {mail_id}")
        return 1
    print(f"e-mail {mail.id} ({mail.kind}) of booking {mail.booking_id or '-'}: {status(mail)}")
    if mail.withheld_at:
        print(f"  withheld {_when(mail.withheld_at)}, never sent: {mail.withheld_reason}")
    if mail.last_error:
        print(f"  last error: {mail.last_error}")
    print(f"To: {mask_email(mail.recipient)}")
    print(f"Subject: {mail.subject}")
    print()
    print(mail.body)
    return 0
