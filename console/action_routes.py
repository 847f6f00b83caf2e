"""The console's forms: each POST runs one action (console/actions.py) with the signed-in operator's
name and the reason given, then goes back to the page it came from with what happened."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, request, url_for

from console import actions
from console.actions import ActionRefused
from console.pages import force_confirmation
from models.tables import Booking

bp = Blueprint("actions", __name__)


def _back_to_booking(booking_id: str):
    return redirect(url_for("pages.booking", booking_id=booking_id))


def _run(action, *args, **kwargs):
    try:
        flash(action(g.user.name, *args, **kwargs), "done")
    except ActionRefused as refused:
        flash(str(refused), "refused")


@bp.post("/bookings/<booking_id>/retry")
def retry(booking_id: str):
    _run(actions.retry, booking_id, request.form.get("reason", ""))
    return _back_to_booking(booking_id)


@bp.post("/bookings/<booking_id>/force")
def force(booking_id: str):
    """The first POST shows what forcing means (with its warnings); only the confirmed one forces."""
    reason = request.form.get("reason", "")
    try:
        target = actions.target_state(request.form.get("state", ""))
    except ActionRefused as refused:
        flash(str(refused), "refused")
        return _back_to_booking(booking_id)
    booking = Booking.by_id(booking_id)
    if booking is not None and reason.strip() and request.form.get("confirmed") != "yes":
        return force_confirmation(booking, target, reason)
    _run(actions.force_state, booking_id, target, reason)  # refuses a missing booking or reason itself
    return _back_to_booking(booking_id)


@bp.post("/bookings/<booking_id>/cancel")
def cancel(booking_id: str):
    _run(actions.cancel, booking_id, request.form.get("refund") == "full", request.form.get("reason", ""))
    return _back_to_booking(booking_id)


@bp.post("/deliveries/<int:event_pk>/replay")
def replay(event_pk: int):
    try:
        message, booking_id = actions.replay(g.user.name, event_pk, request.form.get("reason", ""))
        flash(message, "done")
    except ActionRefused as refused:
        flash(str(refused), "refused")
        booking_id = None
    back = request.form.get("back")
    if back == "booking" and booking_id:
        return _back_to_booking(booking_id)
    return redirect(url_for("pages.deliveries", view=request.form.get("view", "failed")))


@bp.post("/flags/<name>")
def set_flag(name: str):
    _run(actions.set_flag, name, request.form.get("value") == "on", request.form.get("reason", ""))
    return redirect(url_for("pages.flags_page"))
