"""Parity with the official Python SDK: for every action of the catalogue,
the request Patchbay sends for a typed action equals the one the official
`stripe` package (tests/blackbox/requirements.txt pins it) sends for the same
call, both captured by one local recording server.

The server that scripts/blackbox starts talks to localstripe, which cannot
record what it receives, so this module starts a second `patchbay serve` of
the same binary (PATCHBAY_BIN when set, else the release build in
${CARGO_TARGET_DIR:-target}, which is what scripts/blackbox builds and runs)
with its Stripe API base on the recorder, a fresh data directory and an
admin token of its own.

Compared per call: the method, the path, and the decoded query and form pairs
(sorted; empty values kept). Headers differ by design (User-Agent, telemetry,
Patchbay's generated Idempotency-Key) and are not compared, except
Stripe-Account where the call names a connected account.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import stripe

from conftest import Api, describe, ok, single_server_only, stripe_key

pytestmark = single_server_only(
    "it starts its own single SQLite `patchbay serve` against its recording server"
    " and never uses the replicas (it ran in the single-server pass)"
)

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------
# The recording server: plays Stripe for both clients, keeps every request
# --------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]

    def pairs(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The decoded query pairs and form pairs, each sorted."""
        query = sorted(parse_qsl(self.query, keep_blank_values=True, strict_parsing=False))
        form = sorted(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        return query, form


def plausible_answer(method: str, path: str) -> dict[str, Any]:
    """What Stripe would answer in shape: the account, a list, a search result or an object."""
    segments = path.strip("/").split("/")
    if path == "/v1/account":
        return {
            "id": "acct_1Recorder",
            "object": "account",
            "email": "ops@recorder.test",
            "country": "US",
            "default_currency": "usd",
            "charges_enabled": True,
            "settings": {"dashboard": {"display_name": "Recorder"}},
        }
    if path.endswith("/search"):
        return {"object": "search_result", "data": [], "has_more": False, "next_page": None, "url": path}
    if method == "GET" and len(segments) == 2 and path != "/v1/balance":
        return {"object": "list", "data": [], "has_more": False, "url": path}
    if path == "/v1/balance":
        return {"object": "balance", "available": [], "pending": [], "livemode": False}
    resource = segments[1] if len(segments) > 1 else "object"
    ident = segments[2] if len(segments) > 2 else "x_recorded"
    return {"id": ident, "object": resource.rstrip("s"), "livemode": False}


class RecordingServer:
    """A local HTTP server answering any path with plausible JSON and recording
    each request (method, path, query, body, headers)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                body = self._body()
                with recorder.lock:
                    recorder.requests.append(
                        Recorded(
                            method=self.command,
                            path=parts.path,
                            query=parts.query,
                            body=body,
                            headers={k.lower(): v for k, v in self.headers.items()},
                        )
                    )
                payload = json.dumps(plausible_answer(self.command, parts.path)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Request-Id", f"req_rec{secrets.token_hex(6)}")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "RecordingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def mark(self) -> int:
        with self.lock:
            return len(self.requests)

    def since(self, mark: int) -> list[Recorded]:
        """Requests after `mark`, without the account checks Patchbay makes on its own."""
        with self.lock:
            return [r for r in self.requests[mark:] if r.path != "/v1/account"]


# --------------------------------------------------------------------------
# A second Patchbay, whose Stripe is the recorder
# --------------------------------------------------------------------------


def patchbay_binary() -> Path:
    if os.environ.get("PATCHBAY_BIN"):
        return Path(os.environ["PATCHBAY_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "patchbay"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Patchbay:
    url: str
    admin_token: str
    process: subprocess.Popen
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def recorder():
    with RecordingServer() as server:
        yield server


@pytest.fixture(scope="module")
def patchbay(recorder: RecordingServer, tmp_path_factory):
    binary = patchbay_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"no Patchbay binary at {binary}: set PATCHBAY_BIN or build with cargo build --release -p patchbay")
    work = tmp_path_factory.mktemp("parity")
    (work / "data").mkdir()
    port = free_port()
    admin_token = "adm_" + secrets.token_urlsafe(36)
    # The binary refuses PATCHBAY_* settings it does not know (pytest's
    # environment carries PATCHBAY_URL): only ours reach it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env.update(
        PATCHBAY_LISTEN=f"127.0.0.1:{port}",
        PATCHBAY_DATA_DIR=str(work / "data"),
        PATCHBAY_STRIPE_API_BASE=recorder.url,
        PATCHBAY_ADMIN_TOKEN=admin_token,
        PATCHBAY_STRIPE_MAX_RETRIES="0",
        PATCHBAY_LOG="warn",
    )
    log = work / "patchbay.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(binary), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    pb = Patchbay(url=f"http://127.0.0.1:{port}", admin_token=admin_token, process=process, log=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"the second Patchbay exited ({process.returncode}):\n{pb.log_tail()}")
            try:
                if requests.get(f"{pb.url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the second Patchbay was not ready within 30 s:\n{pb.log_tail()}")
            time.sleep(0.1)
        yield pb
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Setup:
    api: Api
    connection: str
    sdk: stripe.StripeClient


@pytest.fixture(scope="module")
def setup(patchbay: Patchbay, recorder: RecordingServer) -> Setup:
    admin = Api(patchbay.admin_token)
    tenant = ok(admin.post(f"{patchbay.url}/api/v1/tenants", json={"name": "parity"}), 201)
    key = ok(
        admin.post(
            f"{patchbay.url}/api/v1/tenants/{tenant['id']}/api-keys",
            json={"scopes": ["connections:write", "proxy"], "name": "parity"},
        ),
        201,
    )
    api = Api(key["key"])
    sk = stripe_key()
    conn = ok(api.post(f"{patchbay.url}/api/v1/connections", json={"provider": "stripe", "api_key": sk}), 201)
    assert conn["status"] == "active", conn
    sdk = stripe.StripeClient(sk, base_addresses={"api": recorder.url}, max_network_retries=0)
    return Setup(api=api, connection=conn["id"], sdk=sdk)


# --------------------------------------------------------------------------
# The calls: a typed action, and the same call written for the SDK by hand
# --------------------------------------------------------------------------


@dataclass
class Case:
    action: str
    config: dict[str, Any]
    # The SDK method under client.v1, its positional arguments, its params.
    sdk: str
    args: tuple = ()
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def id(self) -> str:
        return self.action.removeprefix("stripe.") + (f"-{self.label}" if self.label else "")


CUS = "cus_Q1a2B3"
ADDRESS = {"line1": "1 Main St", "line2": "Suite 5", "city": "San Francisco", "state": "CA", "postal_code": "94107", "country": "US"}
SHIPPING = {"name": "Jane Doe", "phone": "+14155550101", "address": {"line1": "2 Dock Rd", "postal_code": "94110", "country": "US"}}
RANGE = {"gte": 1_700_000_000, "lt": 1_710_000_000}

CASES = [
    # --- Customers --------------------------------------------------------------
    Case("stripe.getCustomer", {"customerId": CUS, "expand": ["default_source", "invoice_settings.default_payment_method"]},
         "customers.retrieve", (CUS,), {"expand": ["default_source", "invoice_settings.default_payment_method"]}),
    Case("stripe.createCustomer",
         {"email": "jane@example.com", "name": "Jane Doe", "phone": "+14155550100", "description": "VIP",
          "address": ADDRESS, "shipping": SHIPPING,
          "invoiceSettings": {"default_payment_method": "pm_card_visa", "footer": "Thanks",
                              "custom_fields": [{"name": "PO", "value": "PO-7"}, {"name": "Ref", "value": "R&D=1"}]},
          "preferredLocales": ["en", "fr-FR"], "taxExempt": "none",
          "metadata": {"source": "workflow", "note": "a&b=c ü"}, "paymentMethod": "pm_card_visa", "expand": ["tax"],
          "stripeAccount": "acct_1Connected"},
         "customers.create", (),
         {"email": "jane@example.com", "name": "Jane Doe", "phone": "+14155550100", "description": "VIP",
          "address": ADDRESS, "shipping": SHIPPING,
          "invoice_settings": {"default_payment_method": "pm_card_visa", "footer": "Thanks",
                               "custom_fields": [{"name": "PO", "value": "PO-7"}, {"name": "Ref", "value": "R&D=1"}]},
          "preferred_locales": ["en", "fr-FR"], "tax_exempt": "none",
          "metadata": {"source": "workflow", "note": "a&b=c ü"}, "payment_method": "pm_card_visa", "expand": ["tax"]},
         {"stripe_account": "acct_1Connected"}),
    Case("stripe.updateCustomer",
         {"customerId": CUS, "email": "new@example.com", "description": "", "address": {"country": "DE"},
          "taxExempt": "reverse", "metadata": {"tier": "gold", "old": ""}},
         "customers.update", (CUS,),
         {"email": "new@example.com", "description": "", "address": {"country": "DE"}, "tax_exempt": "reverse",
          "metadata": {"tier": "gold", "old": ""}}),
    Case("stripe.deleteCustomer", {"customerId": CUS}, "customers.delete", (CUS,)),
    Case("stripe.listCustomers",
         {"email": "jane+vip@example.com", "created": RANGE, "limit": 10, "startingAfter": "cus_prev",
          "expand": ["data.default_source"]},
         "customers.list", (),
         {"email": "jane+vip@example.com", "created": RANGE, "limit": 10, "starting_after": "cus_prev",
          "expand": ["data.default_source"]}),
    Case("stripe.searchCustomers",
         {"query": "email:'jane@example.com' AND metadata['tier']:'gold'", "limit": 5, "page": "pg_abc"},
         "customers.search", (),
         {"query": "email:'jane@example.com' AND metadata['tier']:'gold'", "limit": 5, "page": "pg_abc"}),
    # --- Charges ----------------------------------------------------------------
    Case("stripe.createCharge",
         {"amount": 2000, "currency": "usd", "customerId": CUS, "source": "card_1Abc", "description": "Order 6735",
          "capture": False, "receiptEmail": "jane@example.com", "statementDescriptor": "ACME ORDER",
          "statementDescriptorSuffix": "6735",
          "shipping": {"name": "Jane Doe", "carrier": "UPS", "tracking_number": "1Z999",
                       "address": {"line1": "2 Dock Rd", "city": "Oakland", "country": "US"}},
          "metadata": {"order": "6735"}, "expand": ["balance_transaction"]},
         "charges.create", (),
         {"amount": 2000, "currency": "usd", "customer": CUS, "source": "card_1Abc", "description": "Order 6735",
          "capture": False, "receipt_email": "jane@example.com", "statement_descriptor": "ACME ORDER",
          "statement_descriptor_suffix": "6735",
          "shipping": {"name": "Jane Doe", "carrier": "UPS", "tracking_number": "1Z999",
                       "address": {"line1": "2 Dock Rd", "city": "Oakland", "country": "US"}},
          "metadata": {"order": "6735"}, "expand": ["balance_transaction"]}),
    Case("stripe.getCharge", {"chargeId": "py_1Abc", "expand": ["customer"]},
         "charges.retrieve", ("py_1Abc",), {"expand": ["customer"]}),
    Case("stripe.listCharges",
         {"customerId": CUS, "paymentIntent": "pi_1Abc", "created": {"gt": 1_700_000_000, "lte": 1_710_000_000},
          "limit": 3, "endingBefore": "ch_next"},
         "charges.list", (),
         {"customer": CUS, "payment_intent": "pi_1Abc", "created": {"gt": 1_700_000_000, "lte": 1_710_000_000},
          "limit": 3, "ending_before": "ch_next"}),
    Case("stripe.captureCharge",
         {"chargeId": "ch_1Abc", "amount": 1500, "receiptEmail": "jane@example.com", "statementDescriptorSuffix": "CAP"},
         "charges.capture", ("ch_1Abc",),
         {"amount": 1500, "receipt_email": "jane@example.com", "statement_descriptor_suffix": "CAP"}),
    # --- Payment intents --------------------------------------------------------
    Case("stripe.createPaymentIntent",
         {"amount": 2000, "currency": "usd", "customerId": CUS, "description": "Order 6735",
          "paymentMethodTypes": ["card", "link"], "paymentMethod": "pm_card_visa", "captureMethod": "manual",
          "confirm": True, "offSession": True, "setupFutureUsage": "off_session", "receiptEmail": "jane@example.com",
          "shipping": {"name": "Jane Doe", "address": {"line1": "2 Dock Rd", "country": "US"}},
          "metadata": {"order": "6735", "channel": "web"}, "expand": ["latest_charge"]},
         "payment_intents.create", (),
         {"amount": 2000, "currency": "usd", "customer": CUS, "description": "Order 6735",
          "payment_method_types": ["card", "link"], "payment_method": "pm_card_visa", "capture_method": "manual",
          "confirm": True, "off_session": True, "setup_future_usage": "off_session", "receipt_email": "jane@example.com",
          "shipping": {"name": "Jane Doe", "address": {"line1": "2 Dock Rd", "country": "US"}},
          "metadata": {"order": "6735", "channel": "web"}, "expand": ["latest_charge"]}),
    Case("stripe.createPaymentIntent",
         {"amount": 999, "currency": "eur", "returnUrl": "https://example.com/done?order=1&step=2",
          "automaticPaymentMethods": {"enabled": True, "allow_redirects": "never"}},
         "payment_intents.create", (),
         {"amount": 999, "currency": "eur", "return_url": "https://example.com/done?order=1&step=2",
          "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}},
         label="automatic"),
    Case("stripe.getPaymentIntent", {"paymentIntentId": "pi_1Abc", "expand": ["latest_charge"]},
         "payment_intents.retrieve", ("pi_1Abc",), {"expand": ["latest_charge"]}),
    Case("stripe.updatePaymentIntent",
         {"paymentIntentId": "pi_1Abc", "amount": 2500, "currency": "eur", "paymentMethodTypes": ["card"],
          "captureMethod": "automatic_async", "metadata": {"order": "6736"}},
         "payment_intents.update", ("pi_1Abc",),
         {"amount": 2500, "currency": "eur", "payment_method_types": ["card"], "capture_method": "automatic_async",
          "metadata": {"order": "6736"}}),
    Case("stripe.confirmPaymentIntent",
         {"paymentIntentId": "pi_1Abc", "paymentMethod": "pm_card_visa", "returnUrl": "https://example.com/return",
          "offSession": False, "captureMethod": "manual"},
         "payment_intents.confirm", ("pi_1Abc",),
         {"payment_method": "pm_card_visa", "return_url": "https://example.com/return", "off_session": False,
          "capture_method": "manual"}),
    Case("stripe.capturePaymentIntent",
         {"paymentIntentId": "pi_1Abc", "amountToCapture": 1500, "metadata": {"captured_by": "workflow"}},
         "payment_intents.capture", ("pi_1Abc",), {"amount_to_capture": 1500, "metadata": {"captured_by": "workflow"}}),
    Case("stripe.cancelPaymentIntent", {"paymentIntentId": "pi_1Abc", "cancellationReason": "requested_by_customer"},
         "payment_intents.cancel", ("pi_1Abc",), {"cancellation_reason": "requested_by_customer"}),
    Case("stripe.listPaymentIntents", {"customerId": CUS, "created": {"gte": 1_700_000_000}, "limit": 100},
         "payment_intents.list", (), {"customer": CUS, "created": {"gte": 1_700_000_000}, "limit": 100}),
    # --- Invoices ---------------------------------------------------------------
    Case("stripe.createInvoice",
         {"customerId": CUS, "autoAdvance": False, "collectionMethod": "send_invoice", "daysUntilDue": 30,
          "description": "March services", "metadata": {"project": "apollo"}, "currency": "usd", "footer": "Net 30",
          "pendingInvoiceItemsBehavior": "include", "expand": ["customer"]},
         "invoices.create", (),
         {"customer": CUS, "auto_advance": False, "collection_method": "send_invoice", "days_until_due": 30,
          "description": "March services", "metadata": {"project": "apollo"}, "currency": "usd", "footer": "Net 30",
          "pending_invoice_items_behavior": "include", "expand": ["customer"]}),
    Case("stripe.createInvoiceItem",
         {"customerId": CUS, "invoiceId": "in_1Abc", "amount": -500, "currency": "usd", "description": "Loyalty credit",
          "discountable": False, "period": {"start": 1_700_000_000, "end": 1_702_592_000},
          "metadata": {"reason": "loyalty"}},
         "invoice_items.create", (),
         {"customer": CUS, "invoice": "in_1Abc", "amount": -500, "currency": "usd", "description": "Loyalty credit",
          "discountable": False, "period": {"start": 1_700_000_000, "end": 1_702_592_000},
          "metadata": {"reason": "loyalty"}}),
    Case("stripe.createInvoiceItem", {"customerId": CUS, "pricing": {"price": "price_1Seat"}, "quantity": 3},
         "invoice_items.create", (), {"customer": CUS, "pricing": {"price": "price_1Seat"}, "quantity": 3},
         label="pricing"),
    Case("stripe.getInvoice", {"invoiceId": "in_1Abc", "expand": ["customer", "payments"]},
         "invoices.retrieve", ("in_1Abc",), {"expand": ["customer", "payments"]}),
    Case("stripe.listInvoices",
         {"customerId": CUS, "status": "open", "subscription": "sub_1Abc", "collectionMethod": "send_invoice",
          "created": {"lt": 1_710_000_000}, "limit": 20, "expand": ["data.customer"]},
         "invoices.list", (),
         {"customer": CUS, "status": "open", "subscription": "sub_1Abc", "collection_method": "send_invoice",
          "created": {"lt": 1_710_000_000}, "limit": 20, "expand": ["data.customer"]}),
    Case("stripe.finalizeInvoice", {"invoiceId": "in_1Abc", "autoAdvance": True},
         "invoices.finalize_invoice", ("in_1Abc",), {"auto_advance": True}),
    Case("stripe.sendInvoice", {"invoiceId": "in_1Abc"}, "invoices.send_invoice", ("in_1Abc",)),
    Case("stripe.voidInvoice", {"invoiceId": "in_1Abc", "expand": ["customer"]},
         "invoices.void_invoice", ("in_1Abc",), {"expand": ["customer"]}),
    Case("stripe.payInvoice", {"invoiceId": "in_1Abc", "paymentMethod": "pm_card_visa", "offSession": True, "forgive": False},
         "invoices.pay", ("in_1Abc",), {"payment_method": "pm_card_visa", "off_session": True, "forgive": False}),
    # --- Subscriptions ----------------------------------------------------------
    Case("stripe.createSubscription",
         {"customerId": CUS, "items": [{"price": "price_basic", "quantity": 2, "metadata": {"seat": "a"}},
                                       {"price": "price_addon"}],
          "trialPeriodDays": 14, "defaultPaymentMethod": "pm_1Abc", "cancelAtPeriodEnd": False,
          "prorationBehavior": "create_prorations", "paymentBehavior": "default_incomplete",
          "metadata": {"plan": "pro"}, "expand": ["latest_invoice.payment_intent"]},
         "subscriptions.create", (),
         {"customer": CUS, "items": [{"price": "price_basic", "quantity": 2, "metadata": {"seat": "a"}},
                                     {"price": "price_addon"}],
          "trial_period_days": 14, "default_payment_method": "pm_1Abc", "cancel_at_period_end": False,
          "proration_behavior": "create_prorations", "payment_behavior": "default_incomplete",
          "metadata": {"plan": "pro"}, "expand": ["latest_invoice.payment_intent"]}),
    Case("stripe.getSubscription", {"subscriptionId": "sub_1Abc", "expand": ["latest_invoice"]},
         "subscriptions.retrieve", ("sub_1Abc",), {"expand": ["latest_invoice"]}),
    Case("stripe.updateSubscription",
         {"subscriptionId": "sub_1Abc",
          "items": [{"id": "si_old", "deleted": True}, {"price": "price_new", "quantity": 1}],
          "prorationBehavior": "always_invoice", "prorationDate": 1_700_000_000, "cancelAtPeriodEnd": True,
          "metadata": {"plan": "enterprise", "old": ""}},
         "subscriptions.update", ("sub_1Abc",),
         {"items": [{"id": "si_old", "deleted": True}, {"price": "price_new", "quantity": 1}],
          "proration_behavior": "always_invoice", "proration_date": 1_700_000_000, "cancel_at_period_end": True,
          "metadata": {"plan": "enterprise", "old": ""}}),
    Case("stripe.cancelSubscription",
         {"subscriptionId": "sub_1Abc", "invoiceNow": True, "prorate": False,
          "cancellationDetails": {"comment": "Too pricey & slow", "feedback": "too_expensive"}},
         "subscriptions.cancel", ("sub_1Abc",),
         {"invoice_now": True, "prorate": False,
          "cancellation_details": {"comment": "Too pricey & slow", "feedback": "too_expensive"}}),
    Case("stripe.listSubscriptions",
         {"customerId": CUS, "status": "all", "price": "price_basic", "created": RANGE, "limit": 50,
          "startingAfter": "sub_prev"},
         "subscriptions.list", (),
         {"customer": CUS, "status": "all", "price": "price_basic", "created": RANGE, "limit": 50,
          "starting_after": "sub_prev"}),
    # --- Products and prices ----------------------------------------------------
    Case("stripe.createProduct",
         {"name": "Pro plan", "active": True, "images": ["https://img.example.com/1.png", "https://img.example.com/2.png"],
          "shippable": False, "unitLabel": "seat", "metadata": {"tier": "pro"},
          "defaultPriceData": {"currency": "usd", "unit_amount": 1500, "tax_behavior": "exclusive",
                               "recurring": {"interval": "month", "interval_count": 1}}},
         "products.create", (),
         {"name": "Pro plan", "active": True, "images": ["https://img.example.com/1.png", "https://img.example.com/2.png"],
          "shippable": False, "unit_label": "seat", "metadata": {"tier": "pro"},
          "default_price_data": {"currency": "usd", "unit_amount": 1500, "tax_behavior": "exclusive",
                                 "recurring": {"interval": "month", "interval_count": 1}}}),
    Case("stripe.getProduct", {"productId": "prod_NWjs8kKbJWmuuc"}, "products.retrieve", ("prod_NWjs8kKbJWmuuc",)),
    Case("stripe.updateProduct",
         {"productId": "prod_NWjs8kKbJWmuuc", "name": "Pro plan 2", "defaultPrice": "price_1New", "active": False,
          "metadata": {"tier": "pro2", "legacy": ""}},
         "products.update", ("prod_NWjs8kKbJWmuuc",),
         {"name": "Pro plan 2", "default_price": "price_1New", "active": False, "metadata": {"tier": "pro2", "legacy": ""}}),
    Case("stripe.listProducts",
         {"active": True, "shippable": False, "ids": ["prod_1", "prod_2"], "created": {"gt": 1_700_000_000}, "limit": 2},
         "products.list", (),
         {"active": True, "shippable": False, "ids": ["prod_1", "prod_2"], "created": {"gt": 1_700_000_000}, "limit": 2}),
    Case("stripe.createPrice",
         {"currency": "usd", "unitAmount": 1500, "product": "prod_NWjs8kKbJWmuuc",
          "recurring": {"interval": "year", "interval_count": 1, "usage_type": "licensed"},
          "lookupKey": "pro_yearly", "taxBehavior": "inclusive", "metadata": {"tier": "pro"}},
         "prices.create", (),
         {"currency": "usd", "unit_amount": 1500, "product": "prod_NWjs8kKbJWmuuc",
          "recurring": {"interval": "year", "interval_count": 1, "usage_type": "licensed"},
          "lookup_key": "pro_yearly", "tax_behavior": "inclusive", "metadata": {"tier": "pro"}}),
    Case("stripe.createPrice",
         {"currency": "eur", "unitAmountDecimal": "12.5",
          "productData": {"name": "API calls", "unit_label": "call", "metadata": {"kind": "metered"}},
          "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_1Abc"}},
         "prices.create", (),
         {"currency": "eur", "unit_amount_decimal": "12.5",
          "product_data": {"name": "API calls", "unit_label": "call", "metadata": {"kind": "metered"}},
          "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_1Abc"}},
         label="product-data"),
    Case("stripe.getPrice", {"priceId": "price_1Abc", "expand": ["product"]},
         "prices.retrieve", ("price_1Abc",), {"expand": ["product"]}),
    Case("stripe.listPrices",
         {"active": True, "currency": "usd", "type": "recurring", "lookupKeys": ["pro_monthly", "pro_yearly"],
          "recurring": {"interval": "month"}, "limit": 10, "expand": ["data.product"]},
         "prices.list", (),
         {"active": True, "currency": "usd", "type": "recurring", "lookup_keys": ["pro_monthly", "pro_yearly"],
          "recurring": {"interval": "month"}, "limit": 10, "expand": ["data.product"]}),
    # --- Payment methods --------------------------------------------------------
    Case("stripe.listPaymentMethods", {"customerId": CUS, "type": "card", "limit": 5},
         "payment_methods.list", (), {"customer": CUS, "type": "card", "limit": 5}),
    Case("stripe.attachPaymentMethod", {"paymentMethodId": "pm_1Abc", "customerId": CUS},
         "payment_methods.attach", ("pm_1Abc",), {"customer": CUS}),
    Case("stripe.detachPaymentMethod", {"paymentMethodId": "pm_1Abc"}, "payment_methods.detach", ("pm_1Abc",)),
    # --- Refunds ----------------------------------------------------------------
    Case("stripe.createRefund",
         {"charge": "ch_1Abc", "amount": 500, "reason": "requested_by_customer", "refundApplicationFee": True,
          "reverseTransfer": False, "metadata": {"ticket": "T-42"}},
         "refunds.create", (),
         {"charge": "ch_1Abc", "amount": 500, "reason": "requested_by_customer", "refund_application_fee": True,
          "reverse_transfer": False, "metadata": {"ticket": "T-42"}}),
    Case("stripe.getRefund", {"refundId": "re_1Abc"}, "refunds.retrieve", ("re_1Abc",)),
    Case("stripe.listRefunds", {"paymentIntent": "pi_1Abc", "created": {"lt": 1_710_000_000}, "limit": 1},
         "refunds.list", (), {"payment_intent": "pi_1Abc", "created": {"lt": 1_710_000_000}, "limit": 1}),
    # --- Disputes ---------------------------------------------------------------
    Case("stripe.getDispute", {"disputeId": "dp_1Abc"}, "disputes.retrieve", ("dp_1Abc",)),
    Case("stripe.listDisputes", {"charge": "ch_1Abc", "created": {"gte": 1_700_000_000}, "limit": 10},
         "disputes.list", (), {"charge": "ch_1Abc", "created": {"gte": 1_700_000_000}, "limit": 10}),
    Case("stripe.updateDispute",
         {"disputeId": "dp_1Abc",
          "evidence": {"customer_name": "Jane Doe", "customer_email_address": "jane@example.com",
                       "receipt": "file_1Abc", "uncategorized_text": "Delivered on time."},
          "metadata": {"case": "77"}, "submit": False},
         "disputes.update", ("dp_1Abc",),
         {"evidence": {"customer_name": "Jane Doe", "customer_email_address": "jane@example.com",
                       "receipt": "file_1Abc", "uncategorized_text": "Delivered on time."},
          "metadata": {"case": "77"}, "submit": False}),
    Case("stripe.closeDispute", {"disputeId": "du_1Abc"}, "disputes.close", ("du_1Abc",)),
    # --- Payouts ----------------------------------------------------------------
    Case("stripe.getPayout", {"payoutId": "po_1Abc", "expand": ["destination"]},
         "payouts.retrieve", ("po_1Abc",), {"expand": ["destination"]}),
    Case("stripe.listPayouts",
         {"status": "paid", "arrivalDate": {"gte": 1_700_000_000, "lte": 1_710_000_000}, "limit": 10},
         "payouts.list", (), {"status": "paid", "arrival_date": {"gte": 1_700_000_000, "lte": 1_710_000_000}, "limit": 10}),
    Case("stripe.createPayout",
         {"amount": 5000, "currency": "usd", "method": "instant", "sourceType": "card",
          "statementDescriptor": "ACME PAYOUT", "metadata": {"week": "12"}},
         "payouts.create", (),
         {"amount": 5000, "currency": "usd", "method": "instant", "source_type": "card",
          "statement_descriptor": "ACME PAYOUT", "metadata": {"week": "12"}}),
    Case("stripe.cancelPayout", {"payoutId": "po_1Abc"}, "payouts.cancel", ("po_1Abc",)),
    # --- Balance ----------------------------------------------------------------
    Case("stripe.getBalance", {"stripeAccount": "acct_1Connected"}, "balance.retrieve", (), {},
         {"stripe_account": "acct_1Connected"}),
    Case("stripe.listBalanceTransactions",
         {"type": "payout", "payout": "po_1Abc", "currency": "usd", "created": RANGE, "limit": 25},
         "balance_transactions.list", (),
         {"type": "payout", "payout": "po_1Abc", "currency": "usd", "created": RANGE, "limit": 25}),
]


def only_one(recorded: list[Recorded], who: str) -> Recorded:
    assert len(recorded) == 1, f"{who}: {len(recorded)} requests reached the recorder: {recorded}"
    return recorded[0]


def test_the_sample_covers_the_catalogue(setup: Setup, patchbay: Patchbay):
    """The issue asks for at least 25 actions; the sample has every one."""
    sampled = {c.action for c in CASES}
    assert len(sampled) >= 25
    served = {a["name"] for a in ok(setup.api.get(f"{patchbay.url}/api/v1/actions"))["data"]}
    assert sampled - served == set(), "cases for actions the catalogue lacks"
    assert served - sampled == set(), "catalogue actions without a parity case"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_patchbay_sends_what_the_official_sdk_sends(case: Case, setup: Setup, patchbay: Patchbay, recorder: RecordingServer):
    mark = recorder.mark()
    r = setup.api.post(
        f"{patchbay.url}/api/v1/connections/{setup.connection}/actions",
        json={"action": case.action, "config": case.config},
    )
    assert r.status_code == 200, f"{describe(r)}\n{patchbay.log_tail()}"
    ours = only_one(recorder.since(mark), "Patchbay")
    # Stripe's answer comes back verbatim.
    assert r.json() == plausible_answer(ours.method, ours.path)

    mark = recorder.mark()
    method = functools.reduce(getattr, case.sdk.split("."), setup.sdk.v1)
    kwargs: dict[str, Any] = {"params": case.params}
    if case.options:
        kwargs["options"] = case.options
    method(*case.args, **kwargs)
    theirs = only_one(recorder.since(mark), "the SDK")

    assert (ours.method, ours.path) == (theirs.method, theirs.path)
    ours_query, ours_form = ours.pairs()
    theirs_query, theirs_form = theirs.pairs()
    assert ours_query == theirs_query, "query pairs differ"
    assert ours_form == theirs_form, "form pairs differ"
    # Parameters never travel both ways at once.
    assert not (ours_query and ours_form), ours
    if case.options.get("stripe_account"):
        assert ours.headers.get("stripe-account") == theirs.headers.get("stripe-account") == case.options["stripe_account"]
