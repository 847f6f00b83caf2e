"""Who is signed in: sign-in attempts limited per user name and per client address, and sessions kept
in the database (the cookie carries a random token, the table only its SHA-256).

Both are in the database so that they hold across console processes: a limit counted in one process's
memory would let an attacker spread guesses over several, and a session kept only in a signed cookie
could not be ended by signing out. A new session, with a new token, is made at every sign-in: a token
planted before it (session fixation) is worth nothing after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from console.passwords import authenticate
from models.db import utcnow
from models.tables import ConsoleSession, ConsoleUser, SignInAttempt

# Failed sign-ins counted over the last WINDOW: past a limit, every sign-in for that name, or from that
# address, is refused (even with the right password) until the failures age out of the window.
WINDOW = dt.timedelta(minutes=15)
FAILURES_PER_NAME = 5
FAILURES_PER_ADDRESS = 20
# A session ends after this long without a request, and after ABSOLUTE_TIMEOUT whatever happens.
IDLE_TIMEOUT = dt.timedelta(hours=2)
ABSOLUTE_TIMEOUT = dt.timedelta(hours=12)
# last_seen_at is written at most this often: not one write per page.
TOUCH_EVERY = dt.timedelta(minutes=1)

SUCCEEDED, WRONG_PASSWORD, REFUSED = "succeeded", "wrong_password", "refused"


@dataclass(frozen=True)
class SignIn:
    user: ConsoleUser | None
    token: str | None = None  # the new session's token, for the cookie
    refusal: str | None = None  # what to tell the person at the form
    limited: bool = False  # refused for the limits, whatever the password


def _failures(condition, since: dt.datetime) -> int:
    return SignInAttempt.select().where(condition, SignInAttempt.outcome == WRONG_PASSWORD,
                                        SignInAttempt.at >= since).count()


def over_limit(name: str, address: str, now: dt.datetime) -> bool:
    since = now - WINDOW
    return (_failures(SignInAttempt.user_name == name[:100], since) >= FAILURES_PER_NAME
            or _failures(SignInAttempt.address == address[:64], since) >= FAILURES_PER_ADDRESS)


def sign_in(name: str, password: str, address: str) -> SignIn:
    """Check the limits, then the password; record the attempt (never the password); on success, a
    new session. A refused attempt is recorded but not counted: it proves nothing about the password."""
    now = utcnow()
    name = name.strip()
    if over_limit(name, address, now):
        SignInAttempt.create(user_name=name[:100], address=address[:64], outcome=REFUSED, at=now)
        minutes = int(WINDOW.total_seconds() // 60)
        return SignIn(None, refusal=f"Too many failed sign-ins for this name or from this address. "
                                    f"Try again in {minutes} minutes.", limited=True)
    user = authenticate(name, password)
    SignInAttempt.create(user_name=name[:100], address=address[:64], outcome=SUCCEEDED if user else WRONG_PASSWORD,
                         at=now)
    if user is None:
        return SignIn(None, refusal="Wrong name or password.")
    token = secrets.token_urlsafe(32)
    ConsoleSession.create(token_hash=_digest(token), user=user, created_at=now, last_seen_at=now)
    return SignIn(user, token=token)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_of(token: str | None) -> ConsoleUser | None:
    """The operator of a live session, or None (no session, ended, idle or too old)."""
    if not token:
        return None
    session = ConsoleSession.get_or_none(ConsoleSession.token_hash == _digest(token))
    now = utcnow()
    if (session is None or session.ended_at is not None or session.last_seen_at < now - IDLE_TIMEOUT
            or session.created_at < now - ABSOLUTE_TIMEOUT):
        return None
    if session.last_seen_at < now - TOUCH_EVERY:
        ConsoleSession.update(last_seen_at=now).where(ConsoleSession.id == session.id).execute()
    return session.user


def end(token: str | None) -> None:
    if token:
        ConsoleSession.update(ended_at=utcnow()).where(ConsoleSession.token_hash == _digest(token),
                                                       ConsoleSession.ended_at.is_null()).execute()
