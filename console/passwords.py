"""The console's accounts: passwords kept only as salted, deliberately slow hashes.

Werkzeug's scrypt (installed with Flask, maintained by the Pallets project): a memory-hard hash with a
random salt per password, in a self-describing string (`scrypt:32768:8:1$salt$hash`), so a stronger
setting later still checks the old hashes. The plain password is never stored, logged or returned.
"""

from __future__ import annotations

import re

from werkzeug.security import check_password_hash, generate_password_hash

from models.db import utcnow
from models.tables import ConsoleUser

METHOD = "scrypt"
MIN_PASSWORD_LENGTH = 12
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")
# Checked when the name is unknown, so that a wrong name costs the same time as a wrong password and
# the answer's delay does not tell which names exist.
_UNKNOWN_USER_HASH = generate_password_hash("not anybody's password", method=METHOD)


class AccountRefused(ValueError):
    """A name or password that cannot make an account; str() says why, never the password."""


def add_user(name: str, password: str, replace: bool = False) -> ConsoleUser:
    """Create the operator `name`, or with `replace` set a new password for an existing one."""
    if not NAME.fullmatch(name or ""):
        raise AccountRefused("a user name is 1 to 100 letters, digits, dots, dashes, underscores or @")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountRefused(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    hashed = generate_password_hash(password, method=METHOD)
    existing = ConsoleUser.get_or_none(ConsoleUser.name == name)
    if existing is not None:
        if not replace:
            raise AccountRefused(f"user {name} exists; add --replace to set a new password")
        ConsoleUser.update(password_hash=hashed, updated_at=utcnow()).where(ConsoleUser.id == existing.id).execute()
        return ConsoleUser.get_by_id(existing.id)
    return ConsoleUser.create(name=name, password_hash=hashed)


def authenticate(name: str, password: str) -> ConsoleUser | None:
    """The user whose name and password these are, or None (unknown name or wrong password alike)."""
    user = ConsoleUser.get_or_none(ConsoleUser.name == name) if NAME.fullmatch(name or "") else None
    if user is None:
        check_password_hash(_UNKNOWN_USER_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
