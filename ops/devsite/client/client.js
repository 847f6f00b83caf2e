// bookingflow's public API as a frontend calls it: everything the reference client's pages do goes
// through here, and nothing else. Copy what you need.
//
// The pages are served by `bookingflow dev` on the API's own origin; elsewhere, set API to
// bookingflow's URL (and serve your pages where the browser may call it).
"use strict";

const API = "";
const POLL_MS = 2000; // the status is cheap to poll with its ETag (an unchanged booking answers 304)

class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;   // the HTTP status
    this.code = code;       // bookingflow's error code, e.g. "wrong_state", "currency_not_offered"
    this.body = body;       // {"error": {"code", "message", ...}}; a 409 also carries the current "state"
  }
}

// One request; JSON in and out. Errors come back as {"error": {"code", "message"}} with a 4xx or 5xx.
async function call(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  const etag = response.headers.get("ETag");
  if (response.status === 304) return { status: 304, etag, data: null };
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
                       error.message || response.statusText, data);
  }
  return { status: response.status, etag, data };
}

// A fresh key per user action: sending the same request again (a retry after a lost answer) with the
// same key is then the same request, never a second one.
function idempotencyKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

const bookingflow = {
  // [{slug, name, duration_minutes, price, currency, prices: {"usd": 5000, ...}, ...}]
  sessionTypes: () => call("GET", "/v1/session-types").then((r) => r.data),

  // {id, state, scheduling_url, status_url}; currency is one of the type's `prices`
  createBooking: (sessionType, email, name, currency, key = idempotencyKey()) =>
    call("POST", "/v1/bookings", { session_type: sessionType, email, name, currency },
         { "Idempotency-Key": key }).then((r) => r.data),

  // What Calendly's embed said in its calendly.event_scheduled message (checked with Calendly first).
  reportScheduled: (id, eventUri, inviteeUri, key = idempotencyKey()) =>
    call("POST", `/v1/bookings/${encodeURIComponent(id)}/scheduled`,
         { event_uri: eventUri, invitee_uri: inviteeUri }, { "Idempotency-Key": key }),

  cancel: (id, reason, key = idempotencyKey()) =>
    call("POST", `/v1/bookings/${encodeURIComponent(id)}/cancel`, { reason }, { "Idempotency-Key": key }),

  retryPayment: (id, key = idempotencyKey()) =>
    call("POST", `/v1/bookings/${encodeURIComponent(id)}/retry-payment`, undefined, { "Idempotency-Key": key }),

  // {scheduling_url}: Calendly's reschedule page, or a fresh link for another session type
  reschedule: (id, sessionType) =>
    call("POST", `/v1/bookings/${encodeURIComponent(id)}/reschedule`,
         sessionType ? { session_type: sessionType } : {}).then((r) => r.data),

  // {status: 200, etag, data: booking} or {status: 304, etag} when `etag` is still current
  booking: (id, etag) =>
    call("GET", `/v1/bookings/${encodeURIComponent(id)}`, undefined, etag ? { "If-None-Match": etag } : {}),
};

// Calls onChange(booking) now and whenever the booking changes, polling with its ETag; returns stop().
function watchBooking(id, onChange, onError) {
  let etag = null;
  let timer = null;
  let stopped = false;
  async function poll() {
    try {
      const answer = await bookingflow.booking(id, etag);
      if (answer.status !== 304) {
        etag = answer.etag;
        onChange(answer.data);
      }
    } catch (error) {
      if (onError) onError(error);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

// Amounts are integers in the currency's minor units: 5000 usd is $50.00, 5000 jpy is ¥5,000.
function money(amount, currency) {
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() });
  return format.format(amount / 10 ** format.resolvedOptions().maximumFractionDigits);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
}

// What each state means to the client.
const STATE_TEXT = {
  IDLE: "Abandoned: nothing is held and nothing was charged.",
  CALENDLY_SCHEDULING: "Pick a time.",
  CALENDLY_SCHEDULED: "Time picked; waiting for Calendly to confirm it.",
  CALENDLY_WEBHOOK_RECEIVED: "Your time is held.",
  PAYMENT_PENDING: "Preparing your payment…",
  PAYMENT_PROCESSING: "Waiting for your payment.",
  PAYMENT_SUCCEEDED: "Payment received; confirming…",
  PAYMENT_FAILED: "The payment did not go through. Your time is held for a while: try again.",
  BOOKING_CONFIRMED: "Confirmed. See you then!",
  BOOKING_CANCELLED: "Cancelled.",
  BOOKING_RESCHEDULED: "Moving to your new time…",
  REFUND_PENDING: "Cancelled; your refund is on its way.",
  REFUND_COMPLETED: "Cancelled and refunded.",
  ERROR_CALENDLY: "Something went wrong with the calendar; we are on it.",
  ERROR_PAYMENT: "Something went wrong with the payment; we are on it.",
  ERROR_WEBHOOK: "Waiting for the calendar to confirm your time…",
  ERROR_RECOVERY: "Something went wrong; we are retrying.",
};

// Pages pass the booking along in their address (?booking=<id>); the booking id is the only key to it.
function bookingIdFromPage() {
  const fromQuery = new URLSearchParams(location.search).get("booking");
  if (fromQuery) return fromQuery;
  const match = location.pathname.match(/\/bookings\/([A-Za-z0-9_-]+)$/);
  return match ? match[1] : null;
}

function show(element, text) {
  element.textContent = text;
  element.hidden = !text;
}
