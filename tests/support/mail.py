"""E-mail as the client receives it: a real SMTP server on a local port, and the calls that make
bookingflow send (a client's action, the broker drained)."""

from __future__ import annotations

import email
import email.policy
import secrets
import socket
import threading
from dataclasses import dataclass

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from models.tables import Outbox
from support.flows import Client
from support.waiting import wait_until


@dataclass(frozen=True)
class Mail:
    recipients: tuple[str, ...]
    message: email.message.EmailMessage
    raw: bytes

    @property
    def body(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()

    @property
    def kind(self) -> str:
        """The kind of the outbox row this e-mail was sent from."""
        (row,) = Outbox.select().where(Outbox.subject == self.message["Subject"], Outbox.recipient == self.message["To"])
        return row.kind


class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that asks for a login and keeps what it receives."""

    def __init__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.user, self.password = "mailer", "smtp-" + secrets.token_hex(12)
        self.url = f"smtp://{self.user}:{self.password}@127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self.greetings = 0  # EHLOs: any client that talked to us
        self.logins = 0
        self._controller: Controller | None = None

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      authenticator=self._authenticate, auth_require_tls=False)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.user.encode()
              and auth_data.password == self.password.encode())
        if ok:
            with self._lock:
                self.logins += 1
        return AuthResult(success=ok)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self._lock:
            self.greetings += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self._lock:
            self._mails.append(Mail(tuple(envelope.rcpt_tos), message, raw))
        return "250 Message accepted for delivery"

    def wait_for(self, count: int) -> list[Mail]:
        return wait_until(lambda: (lambda mails: mails if len(mails) >= count else None)(self.mails),
                          message=f"{count} e-mail(s) at the SMTP server")


def drain(broker) -> None:
    """Wait until every job given to the broker (retries included) has run."""
    broker.join("default", timeout=30_000)


def act(frontend: Client, booking_id: str, action: str, body: dict | None = None) -> requests.Response:
    return frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/{action}", json=body if body is not None else {})
