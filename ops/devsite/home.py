"""The home page of `bookingflow dev`: where everything is, and the latest bookings."""

from __future__ import annotations

from html import escape

from flask import Blueprint, current_app

from ops.devsite import bookings_list
from ops.devsite.html import page

LATEST = 10
# The sandbox's simulator endpoints (not part of either provider's API; no key needed), for curl.
SIMULATOR = (
    ("POST", "/calendly/_sandbox/schedule", '{"scheduling_url": "…", "start_time"?}', "the invitee books a slot"),
    ("POST", "/calendly/_sandbox/reschedule", '{"invitee_uri": "…", "start_time"?}', "the invitee moves it"),
    ("POST", "/calendly/_sandbox/cancel", '{"invitee_uri": "…", "canceler_type": "invitee"|"host"}',
     "the invitee or the host cancels"),
    ("POST", "/stripe/checkout/<session>/pay", '{"outcome": "paid"|"failed"|"delayed"}',
     "the customer pays, is declined, or pays by a delayed method"),
    ("POST", "/stripe/checkout/<session>/settle", '{"outcome": "succeeded"|"failed"}', "a delayed payment settles"),
    ("POST", "/stripe/checkout/<session>/expire", "", "the session reaches its expires_at"),
)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/", "home", home)


def home():
    site = current_app.config["DEVSITE"]
    prefix = escape(site.sandbox_prefix)
    simulator = "".join(f"<tr><td><code>{method} {prefix}{escape(path)}</code></td><td><code>{escape(body)}</code></td>"
                        f"<td>{escape(what)}</td></tr>" for method, path, body, what in SIMULATOR)
    if site.console_path:
        console = f'<p><a href="{escape(site.console_path)}/">The operator console</a> (sign in with an account ' \
                  "made by <code>bookingflow console add-user NAME</code>).</p>"
    else:
        console = ("<p>The operator console is not part of this installation. Where it is, <code>bookingflow dev</code> "
                   "serves it at <code>/console/</code>, and in production it runs as the Procfile's "
                   "<code>console</code> process; meanwhile the <code>bookingflow bookings …</code> commands "
                   "do the operator's work.</p>")
    kept = (f"kept in <code>{escape(str(site.sandbox_file))}</code>, beside the database, so a restarted "
            "<code>bookingflow dev</code> still knows the payments and events of its bookings"
            if site.sandbox_file else "not kept: it starts empty at each start")
    body = f"""
<p>The whole service on embedded defaults, with a sandbox Stripe and Calendly that speak the real wire formats
and send signed webhooks back. Nothing leaves this machine, and e-mails go to the outbox below.</p>
<h2>Book a session</h2>
<p><a id="client" href="/client/">The reference client</a>: five small pages (choose a session type, schedule in
the embedded Calendly, confirm, pay on Checkout, manage the booking) that call only the public API. Read their
source (<a href="/client/client.js">client.js</a>) to copy the calls.</p>
<h2>Bookings</h2>
{bookings_list.latest_table(LATEST)}
<p><a href="/dev/bookings">All bookings</a>, each with a control page that plays the invitee in Calendly and the
card holder at Stripe: schedule, reschedule, cancel as invitee or host, pay, decline, pay later, settle, expire.</p>
<h2>E-mails</h2>
<p><a href="/dev/outbox">The outbox</a>: every e-mail the service would have sent (<code>SMTP_URL</code> is unset,
so they are kept, not sent).</p>
<h2>Operators</h2>
{console}
<h2>The sandbox</h2>
<p>Stripe at <code>{prefix}/stripe</code>, Calendly at <code>{prefix}/calendly</code>; its state is {kept}.
Its simulator endpoints, for <code>curl</code> (JSON or form bodies, no key):</p>
<table><tr><th>request</th><th>body</th><th>what happens</th></tr>{simulator}</table>
<h2>Where things are</h2>
<ul><li>The database: <code>{escape(site.database)}</code></li>
<li>The API's description: <a href="/openapi.json">/openapi.json</a>; health: <a href="/healthz">/healthz</a>,
<a href="/readyz">/readyz</a></li>
<li>One booking driven from the command line: <code>bookingflow demo</code></li></ul>
"""
    return page("bookingflow dev", body)
