"""E-mail addresses: the one strict reading of a recipient, and the looser check of what a client types.

An address header is a small language (RFC 5322): lists, display names, comments, quoted strings, groups.
Handed to an SMTP library, `a,victim@example.com` is two recipients, and `Name <victim@example.com>` is
someone else than it looks. A recipient of ours is therefore read as one bare addr-spec in the common,
unquoted form (`local@domain`), or refused with a reason: nothing in it is interpreted.
"""

from __future__ import annotations

import re

MAX_LENGTH = 254  # RFC 5321's limit on a forward path, less its angle brackets
# RFC 5322 atext, ASCII only: no quoting, no comments, no list or display-name punctuation.
LOCAL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LOCAL_PART = re.compile(rf"{LOCAL_ATOM}(?:\.{LOCAL_ATOM})*")
DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
TOP_LABEL = re.compile(r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})")
# What turns one address into several, or into a name and an address: never part of one we accept.
LIST_OR_NAME = frozenset(',;<>"()[]\\:')


class AddressRefused(ValueError):
    """Not exactly one plain address. str() says why, without repeating the address."""


def single_address(text: object) -> str:
    """The one addr-spec `text` is (surrounding spaces stripped, an internationalized domain in its
    ASCII form), or AddressRefused."""
    if not isinstance(text, str):
        raise AddressRefused("no address")
    address = text.strip(" ")
    if not address:
        raise AddressRefused("no address")
    if any(ord(char) < 0x20 or ord(char) == 0x7F or char.isspace() for char in address):
        raise AddressRefused("the address holds a line break, a space or a control character")
    found = sorted(set(address) & LIST_OR_NAME)
    if found:
        raise AddressRefused(f"not a single plain address (it holds {''.join(found)!r}: a list, a display name or "
                             f"a comment)")
    if address.count("@") != 1:
        raise AddressRefused(f"not a single address ({address.count('@')} @ signs)")
    local, domain = address.split("@")
    if not (len(local) <= 64 and LOCAL_PART.fullmatch(local)):
        raise AddressRefused("the part before the @ is not a plain ASCII mailbox name")
    try:
        # An internationalized domain is sent in its ASCII (punycode) form.
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressRefused("the domain is not a valid host name") from None
    labels = domain.split(".")
    if (len(labels) < 2 or not all(DOMAIN_LABEL.fullmatch(label) for label in labels)
            or not TOP_LABEL.fullmatch(labels[-1])):
        raise AddressRefused("the domain is not a valid host name")
    address = f"{local}@{'.'.join(labels)}"
    if len(address) > MAX_LENGTH:
        raise AddressRefused(f"longer than {MAX_LENGTH} characters")
    return address


def looks_like_a_list_or_name(text: str) -> bool:
    """What a client typed holds list or display-name punctuation: `a@x.com,b@y.com`, `Name <a@x.com>`.
    (A colon alone is let through there: no e-mail is sent to what a client types, and a colon makes
    no second recipient.)"""
    return bool(set(text) & (LIST_OR_NAME - {":"}))
