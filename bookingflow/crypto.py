"""The client's personal data at rest: encryption with the keys of DATA_ENCRYPTION_KEY, and a keyed
hash of the e-mail address to find a booking by it without storing the address in the clear.

- `DATA_ENCRYPTION_KEY` holds one or several Fernet keys, comma-separated. The first encrypts; every
  listed key decrypts (MultiFernet), so a key is rotated by listing the new one first and the old one
  after it, running `bookingflow data rotate-key` (which re-encrypts every encrypted column with the first key),
  then dropping the old key.
- What a column stores: `enc1:<Fernet token>` when a key is configured, the plaintext otherwise. Both
  are always read, so rows written before a key was set stay readable. Plaintext that happens to start
  with a marker is stored as `txt1:<plaintext>` so it is never mistaken for ciphertext.
- The e-mail hash is HMAC-SHA256 of the normalized address (stripped, lowercased), keyed with a key
  derived (HKDF-SHA256) from the FIRST encryption key. Rotating the first key therefore changes every
  hash: `data rotate-key` re-computes them, and until it has run, lookups try the hash under each
  listed key. Without any key no hash is written (NULL) and lookups compare the plaintext.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from bookingflow import settings as settings_module

ENCRYPTED = "enc1:"  # version 1: a Fernet token follows
ESCAPED = "txt1:"  # plaintext that starts with a marker follows
_HASH_INFO = b"bookingflow email lookup hash v1"


class DecryptionError(Exception):
    """A stored value cannot be decrypted with the listed keys. str() is one line, without the value."""


def configured_keys() -> tuple[str, ...]:
    return settings_module.get().data_encryption_keys


def enabled(keys: tuple[str, ...] | None = None) -> bool:
    return bool(configured_keys() if keys is None else keys)


@functools.lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...]):
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(key.encode("ascii")) for key in keys])


@functools.lru_cache(maxsize=16)
def _hash_key(key: str) -> bytes:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HASH_INFO).derive(base64.urlsafe_b64decode(key))


def encrypt(text: str, keys: tuple[str, ...] | None = None) -> str:
    """`enc1:` + a Fernet token of `text` under the first key."""
    keys = configured_keys() if keys is None else keys
    if not keys:
        raise ValueError("no key to encrypt with: DATA_ENCRYPTION_KEY is not set")
    return ENCRYPTED + _multi_fernet(tuple(keys)).encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(stored: str, keys: tuple[str, ...] | None = None) -> str:
    """The plaintext of an `enc1:` value, with whichever listed key encrypted it."""
    from cryptography.fernet import InvalidToken

    keys = configured_keys() if keys is None else keys
    if not keys:
        raise DecryptionError("an encrypted value was read but DATA_ENCRYPTION_KEY is not set")
    try:
        return _multi_fernet(tuple(keys)).decrypt(stored[len(ENCRYPTED):].encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise DecryptionError("an encrypted value matches no key of DATA_ENCRYPTION_KEY "
                              "(was the key that wrote it removed?)") from None


def seal(text: str, keys: tuple[str, ...] | None = None) -> str:
    """What a column stores for `text`: ciphertext when a key is configured, plaintext otherwise."""
    keys = configured_keys() if keys is None else keys
    if keys:
        return encrypt(text, keys)
    return ESCAPED + text if text.startswith((ENCRYPTED, ESCAPED)) else text


def unseal(stored: str, keys: tuple[str, ...] | None = None) -> str:
    """The plaintext of a stored value, whichever way it was written."""
    if stored.startswith(ENCRYPTED):
        return decrypt(stored, keys)
    if stored.startswith(ESCAPED):
        return stored[len(ESCAPED):]
    return stored


def normalize_email(address: str) -> str:
    return address.strip().lower()


def email_hash(address: str | None, keys: tuple[str, ...] | None = None) -> str | None:
    """The lookup hash of an address under the first key; None without a key (or an address)."""
    keys = configured_keys() if keys is None else keys
    if address is None or not keys:
        return None
    return _hmac(keys[0], address)


def email_hashes(address: str, keys: tuple[str, ...] | None = None) -> list[str]:
    """The address's hash under every listed key: what a lookup matches while a rotation is under way."""
    keys = configured_keys() if keys is None else keys
    return list(dict.fromkeys(_hmac(key, address) for key in keys))


def _hmac(key: str, address: str) -> str:
    return hmac.new(_hash_key(key), normalize_email(address).encode("utf-8"), hashlib.sha256).hexdigest()
