"""Session types, imported the way an operator imports them (ops.catalog)."""

from __future__ import annotations

# The refund policy of the catalogue's short-call and long-call: full refund 48 hours or more before
# the start, half 24 hours or more before, nothing later.
POLICY = {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}


def make_session_type(sandbox_base: str, slug: str, price: int = 5000, currency: str = "usd", **extra):
    from models.tables import SessionType
    from ops.catalog import import_session_types

    import_session_types([{
        "slug": slug, "name": slug.replace("-", " ").title(), "duration_minutes": 60, "price": price,
        "currency": currency, "calendly_event_type": f"https://api.calendly.com/event_types/{slug}",
        "scheduling_url": f"{sandbox_base}/calendly/book/{slug}", **extra,
    }])
    return SessionType.get(SessionType.slug == slug)
