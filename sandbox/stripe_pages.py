"""The pages a customer of the sandbox's Stripe sees: Checkout, the charge's receipt, the hosted invoice.

They take plain objects (Stripe's JSON shapes) and URLs, and return HTML; nothing here reads state.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .stripe_pricing import BASIS_POINTS, Totals, format_amount

# What Stripe Checkout does with a declined card: the customer stays on the page to try another card;
# the session stays open and no event is sent, until it is paid or expires.
DECLINED = ('<p role="alert"><strong>Your card was declined.</strong> Try again with another card. '
            "Stripe Checkout keeps this session open and sends no event for a decline: the shop hears "
            "nothing until the session is paid or expires.</p>")
OUTCOMES = (("paid", "Pay"), ("failed", "Fail (card declined)"), ("delayed", "Pay later (delayed method)"))


def _page(title: str, body: str) -> str:
    return f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}"


def _rate(basis_points: int) -> str:
    percent = basis_points * 100 / BASIS_POINTS
    return f"{percent:g}%"


def breakdown(totals: Totals, currency: str, *, tax_basis_points: int | None, inclusive: bool,
              code: str | None) -> str:
    """Subtotal, discount, tax and total as a small table (`id`s let tests find each figure)."""
    rows = [("subtotal", "Subtotal", totals.subtotal)]
    if code or totals.discount:
        label = f"Discount ({code})" if code else "Discount"
        rows.append(("discount", label, -totals.discount))
    if tax_basis_points is not None:
        label = f"Tax ({_rate(tax_basis_points)}{', included' if inclusive else ''})"
        rows.append(("tax", label, totals.tax))
    rows.append(("total", "Total due", totals.total))
    cells = "".join(f'<tr><th>{html.escape(label)}</th><td id="{key}">{html.escape(format_amount(amount, currency))}'
                    f"</td></tr>" for key, label, amount in rows)
    return f"<table>{cells}</table>"


@dataclass
class CheckoutView:
    """What the Checkout page shows for one session."""

    session: dict
    totals: Totals
    tax_basis_points: int | None  # None: the session has no automatic tax
    inclusive: bool
    code: str  # the promotion code entered ("" when none)
    pay_url: str
    page_url: str
    expire_url: str = ""
    error: str | None = None  # a refused code or action, shown on the page
    declined: bool = False


def checkout_html(view: CheckoutView) -> str:
    esc, session = html.escape, view.session
    if session["status"] != "open":
        back = f'<p><a href="{esc(session["cancel_url"])}">Back to the shop</a></p>' if session["cancel_url"] else ""
        return _page("Sandbox Checkout", f"<p>This checkout session is {esc(session['status'])}.</p>{back}")
    figures = breakdown(view.totals, session["currency"], tax_basis_points=view.tax_basis_points,
                        inclusive=view.inclusive, code=view.code or None)
    notice = DECLINED if view.declined else ""
    if view.error:
        notice += f'<p class="error" role="alert"><strong>{esc(view.error)}</strong></p>'
    code_field = ""
    if session.get("allow_promotion_codes"):
        code_field = (f'<p><label>Promotion code <input name="promotion_code" value="{esc(view.code)}"></label> '
                      f'<button formmethod="get" formaction="{esc(view.page_url)}">Apply</button></p>')
    buttons = "".join(f'<button name="outcome" value="{value}">{label}</button> ' for value, label in OUTCOMES)
    cancel = f'<p><a href="{esc(session["cancel_url"])}">Cancel</a></p>' if session["cancel_url"] else ""
    form = (f'<form method="post" action="{esc(view.pay_url)}"><input type="hidden" name="via" value="page">'
            f"{code_field}<p>{buttons}</p></form>")
    expire = (f'<form method="post" action="{esc(view.expire_url)}"><input type="hidden" name="via" value="page">'
              "<p><button>Let it expire now</button> (the sandbox's shortcut for waiting until "
              "<code>expires_at</code>: Stripe then sends <code>checkout.session.expired</code>)</p></form>")
    return _page("Sandbox Checkout", f"{notice}{figures}{form}{expire}{cancel}")


def receipt_html(charge: dict, session: dict | None) -> str:
    """The charge's receipt: what was paid, and (from its Checkout Session) the discount and tax in it."""
    currency = charge["currency"]
    rows = []
    if session is not None:
        details = session["total_details"]
        rows += [("subtotal", "Subtotal", session["amount_subtotal"]),
                 ("discount", "Discount", -details["amount_discount"]), ("tax", "Tax", details["amount_tax"])]
    rows.append(("amount", "Amount paid", charge["amount"]))
    if charge["amount_refunded"]:
        rows.append(("refunded", "Refunded", -charge["amount_refunded"]))
    cells = "".join(f'<tr><th>{label}</th><td id="{key}">{html.escape(format_amount(amount, currency))}</td></tr>'
                    for key, label, amount in rows)
    card = charge["payment_method_details"]["card"]
    return _page("Receipt from Sandbox", f"<p>Receipt for {html.escape(charge['id'])}, paid with "
                 f"{html.escape(card['brand'])} •••• {html.escape(card['last4'])}.</p><table>{cells}</table>")


def invoice_html(invoice: dict, *, printable: bool = False) -> str:
    """The hosted invoice page (and, `printable`, the document served as its PDF)."""
    currency = invoice["currency"]
    rows = [("subtotal", "Subtotal", invoice["subtotal"]),
            ("discount", "Discount", -sum(d["amount"] for d in invoice["total_discount_amounts"])),
            ("tax", "Tax", sum(t["amount"] for t in invoice["total_taxes"])),
            ("total", "Total", invoice["total"]), ("amount_paid", "Amount paid", invoice["amount_paid"])]
    cells = "".join(f'<tr><th>{label}</th><td id="{key}">{html.escape(format_amount(amount, currency))}</td></tr>'
                    for key, label, amount in rows)
    lines = "".join(f"<li>{html.escape(line['description'] or '')}: "
                    f"{html.escape(format_amount(line['amount'], currency))}</li>" for line in invoice["lines"]["data"])
    title = f"Invoice {invoice['number']}" + (" (PDF)" if printable else "")
    description = f"<p>{html.escape(invoice['description'])}</p>" if invoice["description"] else ""
    return _page(title, f"<p>Status: {html.escape(invoice['status'])}. Billed to "
                 f"{html.escape(invoice['customer_email'] or '')}.</p>{description}<ul>{lines}</ul><table>{cells}</table>")
