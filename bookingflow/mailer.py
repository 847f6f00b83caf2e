"""Sending one e-mail over SMTP (SMTP_URL), or only logging it when SMTP_URL is unset."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from bookingflow import settings as settings_module
from bookingflow.privacy import mask_email

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 20


def build_message(recipient: str, subject: str, body: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings_module.get().mail_from
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # Stable per outbox row: if a send is ever repeated, mail systems see the same message.
    message["Message-ID"] = message_id
    message.set_content(body)
    return message


def send(recipient: str, subject: str, body: str, message_id: str) -> bool:
    """True if handed to an SMTP server; False if SMTP_URL is unset and the e-mail was only logged.
    `recipient` is one bare address (bookingflow.addresses.single_address): the only envelope recipient."""
    url = settings_module.get().smtp_url
    if not url:
        log.info("e-mail %r to %s kept in the outbox (SMTP_URL unset)", subject, mask_email(recipient))
        return False
    parts = urlsplit(url)
    connection_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    with connection_class(parts.hostname, port, timeout=TIMEOUT_SECONDS) as smtp:
        smtp.ehlo()
        if parts.scheme == "smtp" and smtp.has_extn("starttls"):
            smtp.starttls()
            smtp.ehlo()
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        # The envelope names the one recipient itself: left to read the To header, smtplib would make a
        # list of whatever that header parses into.
        smtp.send_message(build_message(recipient, subject, body, message_id), to_addrs=[recipient])
    return True
