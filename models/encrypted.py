"""A column of personal data, encrypted at rest when DATA_ENCRYPTION_KEY is set (see bookingflow.crypto)."""

from __future__ import annotations

import peewee

from bookingflow import crypto


class EncryptedTextField(peewee.TextField):
    """Writes `enc1:<token>` under the first key when a key is configured, the plaintext otherwise; reads
    both. Comparing the column with a value in a query compares ciphertext, which never matches (every
    encryption differs): look rows up by a keyed hash instead (Booking.email_hash)."""

    def db_value(self, value):
        if value is None or isinstance(value, peewee.Node):
            return value
        return crypto.seal(str(value))

    def python_value(self, value):
        return None if value is None else crypto.unseal(value)
