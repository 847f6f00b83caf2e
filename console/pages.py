"""The console's pages (reads only): the dashboard, bookings, a booking, deliveries, flags, session types."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, render_template, request
from werkzeug.exceptions import HTTPException

from bookingflow.providers.stripe_amounts import display
from console import charts, dashboard as figures, queries
from console.actions import force_warnings
from models import flags
from models.db import utcnow
from models.states import State
from models.tables import AuditEntry

bp = Blueprint("pages", __name__)

PERIODS = (7, 30, 90)


def _page() -> int:
    value = request.args.get("page", "1")
    return int(value) if value.isdigit() and 0 < int(value) < 100_000 else 1


@bp.get("/")
def dashboard():
    days = request.args.get("days", "30")
    days = int(days) if days.isdigit() and int(days) in PERIODS else 30
    until = utcnow()
    board = figures.build(until - dt.timedelta(days=days), until)
    money = {currency: charts.daily(f"Revenue in {currency.upper()} per day", board.days, {currency.upper(): values},
                                    show=lambda value, c=currency: display(int(value), c))
             for currency, values in board.revenue.items()}
    drawn = {
        "funnel": charts.bars("Conversion: bookings created in the period, by the furthest step reached",
                              [(name, count, str(count)) for name, count in board.funnel]),
        "payments": charts.bars("Checkouts by outcome", [(status, count, str(count))
                                                          for status, count in sorted(board.payments.items())]),
        "cancellations": charts.daily("Cancellations, abandoned flows and refunds per day", board.days,
                                      board.cancellations),
        "latency": charts.bars("Webhook to visible state change", [(label, count, str(count))
                                                                   for label, count in board.latency_buckets]),
    }
    return render_template("dashboard.html", board=board, charts=drawn, revenue=money, days=days, periods=PERIODS)


@bp.get("/bookings")
def bookings():
    filters = queries.Filters(state=request.args.get("state", ""), flagged=request.args.get("flagged") == "1",
                              stuck=request.args.get("stuck") == "1", email=request.args.get("email", "").strip()[:320])
    page = queries.bookings(filters, _page(), utcnow())
    return render_template("bookings.html", page=page, filters=filters, states=list(State.__members__))


@bp.get("/bookings/<booking_id>")
def booking(booking_id: str):
    details = queries.booking_details(booking_id)
    if details is None:
        abort(404, description=f"No booking {booking_id}.")
    return render_template("booking.html", d=details, b=details.booking, states=list(State.__members__))


@bp.get("/deliveries")
def deliveries():
    view = request.args.get("view", "failed")
    view = view if view in queries.DELIVERY_VIEWS else "failed"
    return render_template("deliveries.html", page=queries.deliveries(view, _page()), view=view,
                           views=queries.DELIVERY_VIEWS)


@bp.get("/flags")
def flags_page():
    return render_template("flags.html", flags=flags.all_flags(), flagged=queries.flagged_bookings(),
                           audit=list(AuditEntry.select().where(AuditEntry.action == "flag")
                                      .order_by(AuditEntry.at.desc()).limit(20)))


@bp.get("/session-types")
def session_types():
    return render_template("session_types.html", types=queries.session_types())


@bp.get("/audit")
def audit():
    return render_template("audit.html", entries=list(AuditEntry.select().order_by(AuditEntry.at.desc(),
                                                                                    AuditEntry.id.desc()).limit(200)))


def force_confirmation(booking, target: State, reason: str):
    return render_template("force_confirm.html", b=booking, target=target, reason=reason,
                           warnings=force_warnings(booking, target))


def register_errors(app) -> None:
    @app.errorhandler(HTTPException)
    def error_page(error: HTTPException):
        return render_template("error.html", error=error), error.code
