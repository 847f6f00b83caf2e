"""Serves the reference client (`client/`: static HTML and one small script on the public API only) on
the API's origin, and the page a client returns to from Checkout and from its e-mails:
PUBLIC_URL + /bookings/<id> (jobs/checkout.py and jobs/emails.py build those links)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_from_directory

CLIENT = Path(__file__).with_name("client")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/client/", "client_index", lambda: _file("index.html"))
    bp.add_url_rule("/client/<path:name>", "client_file", _file)
    bp.add_url_rule("/bookings/<booking_id>", "booking_page", lambda booking_id: _file("booking.html"))


def _file(name: str):
    if not (CLIENT / name).is_file():
        abort(404)
    response = send_from_directory(CLIENT, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response
