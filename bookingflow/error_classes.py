"""Error classes (seeds/000, section 6.1): every failure in a job is one of five, handled by its class.

| class       | examples                                             | handling                                        |
|-------------|------------------------------------------------------|-------------------------------------------------|
| transient   | timeouts, connection errors, 429s, 5xx, database down | retried with exponential backoff, bounded; then the scheduler's recovery |
| validation  | a payload or reported URI that does not hold up      | recorded on the booking with a message the client can show; not retried |
| payment     | a declined or failed payment or refund               | the client is led to retry the payment          |
| integration | a provider refusing our request (401, 403, 400)      | retried like transient, then recovery; it usually needs a person |
| system      | anything else: a bug                                 | logged, recorded, and an alert                  |

Two integration failures of Calendly's are lasting (`is_lasting`): a refusal (CalendlyRefused, 401/403:
the token, its scopes, its user's role) and a resource gone (CalendlyNotFound, 404/410). Asking again
cannot help, so they are not retried: the slot a refused release leaves held flags its booking, a
check that keeps finding a booking's event gone flags it after a few claims, and a refused check
alerts (jobs/calendly_lasting.py).

The class and the client-safe message are written on the booking (and on the history row of any
transition a failure causes), and GET /v1/bookings/<id> shows them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import peewee
import requests
import stripe
from bookingflow.providers.calendly_client import CalendlyError, CalendlyNotFound, CalendlyRefused
from bookingflow.providers.limits import RateLimited
from bookingflow.providers.calendly_payloads import PayloadInvalid


@dataclass(frozen=True)
class Failure:
    """A failure behind a transition: its class and what the client may be told."""

    error_class: str
    message: str


class ErrorClass(str, enum.Enum):
    TRANSIENT = "transient"
    VALIDATION = "validation"
    PAYMENT = "payment"
    INTEGRATION = "integration"
    SYSTEM = "system"


CLIENT_MESSAGES = {
    ErrorClass.TRANSIENT: "We are waiting for our scheduling or payment partner; your booking will carry on shortly.",
    ErrorClass.VALIDATION: "Some details of this booking could not be accepted.",
    ErrorClass.PAYMENT: "The payment could not be completed. Please retry the payment.",
    ErrorClass.INTEGRATION: "We could not complete a step with our scheduling or payment partner; we are on it.",
    ErrorClass.SYSTEM: "Something went wrong on our side. We have been alerted and will fix it.",
}


def classify(exc: BaseException) -> ErrorClass:
    if isinstance(exc, PayloadInvalid):
        return ErrorClass.VALIDATION
    if isinstance(exc, (RateLimited, requests.Timeout, requests.ConnectionError, stripe.APIConnectionError,
                        stripe.RateLimitError, peewee.OperationalError, peewee.InterfaceError)):
        return ErrorClass.TRANSIENT
    if isinstance(exc, stripe.CardError):
        return ErrorClass.PAYMENT
    if isinstance(exc, stripe.APIError) and not isinstance(exc, stripe.InvalidRequestError):
        return ErrorClass.TRANSIENT  # Stripe's own 5xx
    if isinstance(exc, stripe.StripeError):
        return ErrorClass.INTEGRATION  # 400, 401, 403, 404, idempotency: our request was refused
    if isinstance(exc, CalendlyError):
        return ErrorClass.TRANSIENT if exc.status is None or exc.status >= 500 else ErrorClass.INTEGRATION
    return ErrorClass.SYSTEM


def is_lasting(exc: BaseException) -> bool:
    """A failure that the same call, made again, meets again: a person must act."""
    return isinstance(exc, (CalendlyRefused, CalendlyNotFound))


def failure(error_class: ErrorClass, message: str | None = None) -> Failure:
    """A Failure for a transition, with the class's client message unless a more precise one is given."""
    return Failure(error_class.value, message or CLIENT_MESSAGES[error_class])
