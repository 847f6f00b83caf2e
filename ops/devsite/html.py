"""The few pieces of HTML the dev pages share: plain, server-rendered, no script, nothing from another host."""

from __future__ import annotations

from html import escape

from bookingflow.providers.stripe_amounts import display

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:62rem;margin:1.5rem auto;padding:0 1rem;color:#1d2330}
nav a{margin-right:1rem} table{border-collapse:collapse;margin:.5rem 0} th,td{text-align:left;padding:.2rem .6rem;
border-bottom:1px solid #dde} code{background:#f2f3f7;padding:0 .25rem} .said{background:#eef6ee;padding:.5rem}
.refused{background:#fbeaea;padding:.5rem} form.inline{display:inline} button{margin:.15rem}
.hint{color:#556;font-size:90%}
"""


def page(title: str, body: str) -> str:
    nav = ('<nav><a href="/">Home</a><a href="/client/">Reference client</a><a href="/dev/bookings">Bookings</a>'
           '<a href="/dev/outbox">Outbox</a></nav>')
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(_titled(title))}</title>"
            f"<style>{STYLE}</style>{nav}<h1>{escape(title)}</h1>{body}</html>")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """`rows` hold HTML already escaped by the caller."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def when(moment) -> str:
    return escape(moment.strftime("%Y-%m-%d %H:%M:%S UTC")) if moment else ""


def money(amount: int | None, currency: str) -> str:
    """Minor units as people read them ("$50.00", "¥22,000"), escaped."""
    if amount is None:
        return ""
    return escape(display(amount, currency))


def _titled(title: str) -> str:
    return title if title == "bookingflow dev" else f"{title} · bookingflow dev"
