"""Typed actions (`POST /api/v1/connections/{id}/actions`) against localstripe as
Stripe, through the release binary: the invoice workflow of the integration
documents, payment intents, subscriptions, refunds, products, balance,
auto-pagination over 250 customers, validation before any call, and the audit
trail of the calls.

Every call goes through Patchbay with a key that has only the `proxy` scope.
localstripe's request log (localstripe_server.py's /_blackbox/requests, which
records the SHA-256 of the key each request carried) shows what reached
"Stripe", and that an invalid config sent nothing.

What localstripe lacks, and is therefore not exercised here (the Rust wiremock
tests in crates/patchbay-api/tests and crates/patchbay-stripe cover the
encoding of these actions; nothing below fakes them):
  - prices (`/v1/prices`: createPrice, getPrice, listPrices) and subscription
    items by `price`: localstripe knows only plans (`items[0][plan]`), which
    Stripe's current API and so the catalogue's createSubscription no longer
    take. Plans and subscriptions are therefore created with `stripe.rawRequest`
    (the catalogue's escape hatch, still through Patchbay) and then driven with
    the typed actions;
  - invoices without a subscription: localstripe's POST /v1/invoices answers
    404 "No upcoming invoices for customer" for a customer with no
    subscription, so the invoice workflow subscribes its new customer first;
  - finalizeInvoice and sendInvoice (no such routes), createInvoice's
    autoAdvance / collectionMethod / daysUntilDue and metadata (not taken),
    updateSubscription's metadata (ignored), createProduct's booleans such as
    shippable (refused as form strings);
  - searchCustomers (no search), `/v1/account`, ending_before cursors, and the
    list filters `created`, `type`, `customer` on payment intents and balance
    transactions (localstripe answers 400 "Unexpected …");
  - confirmPaymentIntent with a paymentMethod (localstripe: 500 "Not
    implemented"), cancelPaymentIntent's cancellationReason and createRefund's
    reason (400 "Unexpected …");
  - Stripe's `Request-Id` header (localstripe sends none) and its real error
    messages (localstripe says "Not Found").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from conftest import (
    BASE_URL,
    LOCALSTRIPE_URL,
    Api,
    Tenant,
    check_no_secrets,
    describe,
    error,
    ok,
    stripe_key,
    unique,
    wait_for,
)


# --------------------------------------------------------------------------
# localstripe, seen directly (not through Patchbay)
# --------------------------------------------------------------------------


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Upstream:
    """localstripe itself: its request log, and direct calls for comparison."""

    def __init__(self) -> None:
        self.http = requests.Session()

    def last_seq(self) -> int:
        r = self.http.get(f"{LOCALSTRIPE_URL}/_blackbox/requests", params={"since": 1 << 62}, timeout=10)
        r.raise_for_status()
        return r.json()["last_seq"]

    def calls(self, secret: str, since: int) -> list[dict]:
        """Requests localstripe received with this key after `since`, oldest
        first, less the background validator's test calls."""
        r = self.http.get(f"{LOCALSTRIPE_URL}/_blackbox/requests", params={"since": since}, timeout=10)
        r.raise_for_status()
        return [
            c
            for c in r.json()["data"]
            if c["key_sha256"] == sha256(secret) and c["path"] not in ("/v1/account", "/v1/balance")
        ]

    def direct(self, secret: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(
            method, LOCALSTRIPE_URL + path, headers={"Authorization": f"Bearer {secret}"}, timeout=30, **kwargs
        )


@pytest.fixture(scope="module")
def upstream() -> Upstream:
    return Upstream()


# --------------------------------------------------------------------------
# A connection and a proxy-scoped key to call actions with
# --------------------------------------------------------------------------


@dataclass
class Conn:
    tenant: Tenant
    id: str
    secret: str
    key_id: str
    api: Api

    def post(self, body: dict, **kwargs: Any) -> requests.Response:
        return self.api.post(f"/api/v1/connections/{self.id}/actions", json=body, **kwargs)

    def call(self, action: str, config: dict | None = None, status: int = 200, **kwargs: Any) -> Any:
        """Runs an action; asserts the status and returns Stripe's JSON."""
        body: dict[str, Any] = {"action": action}
        if config is not None:
            body["config"] = config
        return ok(self.post(body, **kwargs), status)

    def step(self, step: dict) -> Any:
        """Sends a whole workflow step (`id`, `type`, `action`, `config`) as is."""
        return ok(self.post(step))

    def stripe_error(self, action: str, config: dict) -> requests.Response:
        """A call whose answer is Stripe's own error, passed through. Stripe's
        body is not Patchbay's envelope, so it goes through a session the
        envelope check does not see; the other checks are run here."""
        http = requests.Session()
        http.headers["x-api-key"] = self.api.token
        r = http.post(
            f"{BASE_URL}/api/v1/connections/{self.id}/actions",
            json={"action": action, "config": config},
            timeout=60,
        )
        assert r.headers.get("x-request-id"), describe(r)
        check_no_secrets([r])
        return r


def make_conn(tenant: Tenant) -> Conn:
    secret = stripe_key()
    conn = tenant.connect(secret, name="actions")
    assert conn["status"] == "active", conn
    created, api = tenant.new_key(["proxy"], name="actions")
    return Conn(tenant=tenant, id=conn["id"], secret=secret, key_id=created["id"], api=api)


@pytest.fixture
def conn(tenant: Tenant) -> Conn:
    return make_conn(tenant)


def email() -> str:
    return f"{unique('act')}@example.com"


# --------------------------------------------------------------------------
# Setup that localstripe needs and the catalogue does not type
# --------------------------------------------------------------------------


def subscribe(conn: Conn, customer_id: str, amount: int = 1200) -> tuple[dict, dict]:
    """A monthly plan and a subscription of `customer_id` to it, made through
    Patchbay with stripe.rawRequest: localstripe has no prices, only plans
    (`items[0][plan]`), which the typed createSubscription does not take."""
    product = conn.call("stripe.createProduct", {"name": unique("plan")})
    plan = conn.call(
        "stripe.rawRequest",
        {
            "method": "POST",
            "path": "/v1/plans",
            "params": {"amount": amount, "currency": "usd", "interval": "month", "product": product["id"]},
        },
    )
    assert plan["object"] == "plan" and plan["product"] == product["id"], plan
    sub = conn.call(
        "stripe.rawRequest",
        {
            "method": "POST",
            "path": "/v1/subscriptions",
            "params": {"customer": customer_id, "items": [{"plan": plan["id"]}], "metadata": {"tier": "pro"}},
        },
    )
    assert sub["object"] == "subscription" and sub["id"].startswith("sub_"), sub
    return plan, sub


# --------------------------------------------------------------------------
# (1) The invoice workflow of the integration documents
# --------------------------------------------------------------------------


def run_invoice_workflow(conn: Conn, customer_email: str) -> dict:
    """listCustomers by email → createCustomer if none → createInvoiceItem →
    createInvoice → getInvoice, each a workflow step sent verbatim, each id
    taken from an earlier step's `output.id` / `output.data[0].id` as a
    workflow template would.

    localstripe creates an invoice only for a customer with a subscription (it
    answers 404 "No upcoming invoices for customer" otherwise, where Stripe
    would invoice the pending items alone), so a new customer is subscribed
    (`subscribe`) before the invoice item; that is setup, not a workflow step."""
    outputs: dict[str, Any] = {}
    outputs["find-customer"] = conn.step(
        {
            "id": "find-customer",
            "type": "action",
            "action": "stripe.listCustomers",
            "config": {"email": customer_email, "limit": 1},
        }
    )
    found = outputs["find-customer"]
    assert found["object"] == "list"
    if found["data"]:
        customer_id = found["data"][0]["id"]
    else:
        outputs["create-customer"] = conn.step(
            {
                "id": "create-customer",
                "type": "action",
                "action": "stripe.createCustomer",
                "config": {
                    "email": customer_email,
                    "name": "Jane Workflow",
                    "address": {"line1": "1 Main Street", "postal_code": "75001", "city": "Paris", "country": "FR"},
                    "paymentMethod": "pm_card_visa",  # Stripe's (and localstripe's) test card
                    "invoiceSettings": {"default_payment_method": "pm_card_visa"},
                    "metadata": {"source": "workflow"},
                },
            }
        )
        customer_id = outputs["create-customer"]["id"]
        outputs["plan"], outputs["subscription"] = subscribe(conn, customer_id)
    outputs["create-item"] = conn.step(
        {
            "id": "create-item",
            "type": "action",
            "action": "stripe.createInvoiceItem",
            "config": {
                "customerId": customer_id,
                "amount": 4200,
                "currency": "usd",
                "description": "Consulting, 2 hours",
                "metadata": {"order": "6735"},
            },
        }
    )
    outputs["create-invoice"] = conn.step(
        {
            "id": "create-invoice",
            "type": "action",
            "action": "stripe.createInvoice",
            "config": {"customerId": customer_id, "description": "November work"},
        }
    )
    outputs["get-invoice"] = conn.step(
        {
            "id": "get-invoice",
            "type": "action",
            "action": "stripe.getInvoice",
            "config": {"invoiceId": outputs["create-invoice"]["id"]},
        }
    )
    outputs["customer_id"] = customer_id
    return outputs


def item_lines(invoice: dict) -> list[tuple]:
    return [
        (line["invoice_item"], line["amount"], line["description"])
        for line in invoice["lines"]["data"]
        if line["type"] == "invoiceitem"
    ]


def test_invoice_workflow_creates_the_customer_once_and_chains_ids(conn: Conn, upstream: Upstream):
    customer_email = email()
    seq = upstream.last_seq()

    first = run_invoice_workflow(conn, customer_email)
    assert first["find-customer"]["data"] == []
    customer = first["create-customer"]
    assert customer["object"] == "customer" and customer["id"].startswith("cus_")
    assert customer["email"] == customer_email
    assert customer["name"] == "Jane Workflow"
    # Nested objects keep Stripe's keys; metadata arrives as metadata[k].
    assert customer["address"] == {"line1": "1 Main Street", "postal_code": "75001", "city": "Paris", "country": "FR"}
    assert customer["invoice_settings"]["default_payment_method"] == "pm_card_visa"
    assert customer["metadata"] == {"source": "workflow"}

    item = first["create-item"]
    assert item["object"] == "invoiceitem" and item["id"].startswith("ii_")
    assert item["customer"] == customer["id"]
    assert (item["amount"], item["currency"], item["description"]) == (4200, "usd", "Consulting, 2 hours")
    assert item["metadata"] == {"order": "6735"}

    invoice = first["create-invoice"]
    assert invoice["object"] == "invoice" and invoice["id"].startswith("in_")
    assert invoice["customer"] == customer["id"]
    assert invoice["description"] == "November work"
    # The invoice took the pending item (besides the subscription's line).
    assert item_lines(invoice) == [(item["id"], 4200, "Consulting, 2 hours")]

    fetched = first["get-invoice"]
    assert fetched["id"] == invoice["id"]
    assert fetched["customer"] == customer["id"]
    assert fetched["customer_email"] == customer_email
    assert item_lines(fetched) == [(item["id"], 4200, "Consulting, 2 hours")]
    assert fetched["total"] == 4200 + 1200  # the item and a month of the plan

    # Run again: the customer is found by email (output.data[0].id), not created twice.
    second = run_invoice_workflow(conn, customer_email)
    assert [c["id"] for c in second["find-customer"]["data"]] == [customer["id"]]
    assert "create-customer" not in second
    assert second["customer_id"] == customer["id"]
    assert second["get-invoice"]["id"] == second["create-invoice"]["id"] != invoice["id"]
    assert item_lines(second["get-invoice"]) == [(second["create-item"]["id"], 4200, "Consulting, 2 hours")]

    # The customer's invoices: the subscription's first one and the two made here.
    listed = conn.call("stripe.listInvoices", {"customerId": customer["id"], "limit": 10})
    assert {i["id"] for i in listed["data"]} == {
        first["subscription"]["latest_invoice"],
        invoice["id"],
        second["create-invoice"]["id"],
    }

    # What reached Stripe with the connection's key: exactly these calls, in
    # order, GET parameters in the query string, every POST with an Idempotency-Key.
    calls = upstream.calls(conn.secret, seq)
    assert [(c["method"], c["path"]) for c in calls] == [
        ("GET", "/v1/customers"),
        ("POST", "/v1/customers"),
        ("POST", "/v1/products"),
        ("POST", "/v1/plans"),
        ("POST", "/v1/subscriptions"),
        ("POST", "/v1/invoiceitems"),
        ("POST", "/v1/invoices"),
        ("GET", f"/v1/invoices/{invoice['id']}"),
        ("GET", "/v1/customers"),
        ("POST", "/v1/invoiceitems"),
        ("POST", "/v1/invoices"),
        ("GET", f"/v1/invoices/{second['create-invoice']['id']}"),
        ("GET", "/v1/invoices"),
    ]
    assert calls[0]["query_keys"] == ["email", "limit"]
    assert calls[-1]["query_keys"] == ["customer", "limit"]
    for c in calls:
        if c["method"] == "POST":
            assert "idempotency-key" in c["header_names"], c


def test_a_credit_invoice_item_may_be_negative(conn: Conn):
    customer = conn.call("stripe.createCustomer", {"email": email()})
    credit = conn.call(
        "stripe.createInvoiceItem",
        {"customerId": customer["id"], "amount": -500, "currency": "usd", "description": "Goodwill credit"},
    )
    assert credit["amount"] == -500
    assert credit["customer"] == customer["id"]


# --------------------------------------------------------------------------
# (2) Payment intents: create, get, update, confirm, capture, cancel
# --------------------------------------------------------------------------


def test_payment_intent_create_confirm_capture(conn: Conn):
    customer = conn.call("stripe.createCustomer", {"email": email(), "name": "Card Holder"})
    # pm_card_visa: Stripe's (and localstripe's) test card id.
    intent = conn.call(
        "stripe.createPaymentIntent",
        {
            "amount": 2000,
            "currency": "USD",
            "customerId": customer["id"],
            "paymentMethod": "pm_card_visa",
            "paymentMethodTypes": ["card"],
            "captureMethod": "manual",
            "metadata": {"order": "6735"},
        },
    )
    assert intent["object"] == "payment_intent" and intent["id"].startswith("pi_")
    assert (intent["amount"], intent["currency"]) == (2000, "usd")  # currency sent lower case
    assert intent["customer"] == customer["id"]
    assert intent["capture_method"] == "manual"
    assert intent["metadata"] == {"order": "6735"}
    assert intent["status"] == "requires_confirmation"

    got = conn.call("stripe.getPaymentIntent", {"paymentIntentId": intent["id"]})
    assert got["id"] == intent["id"] and got["status"] == "requires_confirmation"

    updated = conn.call(
        "stripe.updatePaymentIntent", {"paymentIntentId": intent["id"], "metadata": {"note": "gift wrap"}}
    )
    assert updated["metadata"] == {"order": "6735", "note": "gift wrap"}

    confirmed = conn.call("stripe.confirmPaymentIntent", {"paymentIntentId": intent["id"]})
    assert confirmed["status"] == "requires_capture"
    charge = confirmed["latest_charge"]
    assert charge["captured"] is False and charge["amount"] == 2000

    captured = conn.call("stripe.capturePaymentIntent", {"paymentIntentId": intent["id"], "amountToCapture": 1500})
    assert captured["status"] == "succeeded"
    assert captured["latest_charge"]["id"] == charge["id"]
    assert captured["latest_charge"]["captured"] is True
    # Capturing 1500 of 2000 releases the rest.
    assert captured["latest_charge"]["amount_refunded"] == 500

    # The charge, through the charge actions.
    got_charge = conn.call("stripe.getCharge", {"chargeId": charge["id"]})
    assert got_charge["payment_intent"] == intent["id"]
    assert got_charge["customer"] == customer["id"]
    charges = conn.call("stripe.listCharges", {"customerId": customer["id"]})
    assert [c["id"] for c in charges["data"]] == [charge["id"]]


def test_payment_intent_confirmed_at_creation(conn: Conn):
    intent = conn.call(
        "stripe.createPaymentIntent",
        {"amount": 900, "currency": "eur", "paymentMethod": "pm_card_visa", "confirm": True},
    )
    assert intent["status"] == "succeeded"
    assert intent["latest_charge"]["captured"] is True


def test_payment_intent_cancel(conn: Conn):
    intent = conn.call("stripe.createPaymentIntent", {"amount": 700, "currency": "usd", "paymentMethod": "pm_card_visa"})
    canceled = conn.call("stripe.cancelPaymentIntent", {"paymentIntentId": intent["id"]})
    assert canceled["id"] == intent["id"]
    assert canceled["status"] == "canceled"
    assert conn.call("stripe.getPaymentIntent", {"paymentIntentId": intent["id"]})["status"] == "canceled"


def test_stripes_errors_pass_through_verbatim(conn: Conn, upstream: Upstream):
    # Cancelling twice: Stripe refuses, and its status and body come back as is.
    intent = conn.call("stripe.createPaymentIntent", {"amount": 700, "currency": "usd", "paymentMethod": "pm_card_visa"})
    conn.call("stripe.cancelPaymentIntent", {"paymentIntentId": intent["id"]})
    r = conn.stripe_error("stripe.cancelPaymentIntent", {"paymentIntentId": intent["id"]})
    direct = upstream.direct(conn.secret, "POST", f"/v1/payment_intents/{intent['id']}/cancel")
    assert direct.status_code == 400
    assert r.status_code == 400, describe(r)
    assert r.json() == direct.json()

    # A customer that does not exist: Stripe's 404.
    missing = "cus_" + "Z" * 14
    r = conn.stripe_error("stripe.getCustomer", {"customerId": missing})
    direct = upstream.direct(conn.secret, "GET", f"/v1/customers/{missing}")
    assert direct.status_code == 404
    assert r.status_code == 404, describe(r)
    assert r.json() == direct.json()


# --------------------------------------------------------------------------
# (3) Subscriptions
# --------------------------------------------------------------------------


def test_subscription_get_update_list_cancel(conn: Conn):
    customer = conn.call(
        "stripe.createCustomer",
        {
            "email": email(),
            "paymentMethod": "pm_card_visa",
            "invoiceSettings": {"default_payment_method": "pm_card_visa"},
        },
    )
    plan, created = subscribe(conn, customer["id"])
    assert created["status"] == "active"

    sub = conn.call("stripe.getSubscription", {"subscriptionId": created["id"]})
    assert sub["id"] == created["id"]
    assert sub["customer"] == customer["id"]
    assert sub["metadata"] == {"tier": "pro"}
    assert [i["plan"]["id"] for i in sub["items"]["data"]] == [plan["id"]]
    assert sub["cancel_at_period_end"] is False

    # The first invoice was paid with the default payment method.
    invoice = conn.call("stripe.getInvoice", {"invoiceId": sub["latest_invoice"]})
    assert invoice["subscription"] == sub["id"]
    assert invoice["total"] == 1200
    assert invoice["status"] == "paid"

    # (localstripe ignores a subscription's metadata on update: not checked.)
    updated = conn.call("stripe.updateSubscription", {"subscriptionId": sub["id"], "cancelAtPeriodEnd": True})
    assert updated["cancel_at_period_end"] is True
    assert conn.call("stripe.getSubscription", {"subscriptionId": sub["id"]})["cancel_at_period_end"] is True

    listed = conn.call("stripe.listSubscriptions", {"customerId": customer["id"]})
    assert [s["id"] for s in listed["data"]] == [sub["id"]]

    canceled = conn.call("stripe.cancelSubscription", {"subscriptionId": sub["id"], "invoiceNow": False, "prorate": False})
    assert canceled["id"] == sub["id"]
    assert canceled["status"] == "canceled"
    assert conn.call("stripe.getSubscription", {"subscriptionId": sub["id"]})["status"] == "canceled"
    # A canceled subscription is not listed by default, but is with status=canceled.
    assert conn.call("stripe.listSubscriptions", {"customerId": customer["id"]})["data"] == []
    listed = conn.call("stripe.listSubscriptions", {"customerId": customer["id"], "status": "canceled"})
    assert [s["id"] for s in listed["data"]] == [sub["id"]]


def test_typed_create_subscription_reaches_stripe_and_its_refusal_comes_back(conn: Conn, upstream: Upstream):
    """The typed createSubscription sends Stripe's current `items[0][price]`;
    localstripe knows only plans and refuses any item without one (400 "Bad
    request", where an unknown top-level parameter would be "Unexpected …").
    Patchbay's answer is that refusal, exactly as localstripe gives it to the
    same form sent directly. (The exact pairs are checked by the wiremock tests.)"""
    customer = conn.call("stripe.createCustomer", {"email": email()})
    seq = upstream.last_seq()
    config = {"customerId": customer["id"], "items": [{"price": "plan_missing", "quantity": 2}]}
    r = conn.stripe_error("stripe.createSubscription", config)
    direct = upstream.direct(
        conn.secret,
        "POST",
        "/v1/subscriptions",
        data={"customer": customer["id"], "items[0][price]": "plan_missing", "items[0][quantity]": "2"},
    )
    assert r.status_code == direct.status_code == 400, describe(r)
    assert r.json() == direct.json()
    sent = [c for c in upstream.calls(conn.secret, seq) if c["path"] == "/v1/subscriptions"]
    assert len(sent) == 2  # Patchbay's, then the direct one


# --------------------------------------------------------------------------
# (4) Refunds
# --------------------------------------------------------------------------


def test_refunds_create_get_list(conn: Conn):
    intent = conn.call(
        "stripe.createPaymentIntent",
        {"amount": 5000, "currency": "usd", "paymentMethod": "pm_card_visa", "confirm": True},
    )
    assert intent["status"] == "succeeded"
    charge_id = intent["latest_charge"]["id"]

    by_intent = conn.call(
        "stripe.createRefund", {"paymentIntent": intent["id"], "amount": 1200, "metadata": {"ticket": "T-1"}}
    )
    assert by_intent["object"] == "refund" and by_intent["id"].startswith("re_")
    assert (by_intent["amount"], by_intent["currency"]) == (1200, "usd")
    assert by_intent["charge"] == charge_id
    assert by_intent["payment_intent"] == intent["id"]
    assert by_intent["metadata"] == {"ticket": "T-1"}
    assert by_intent["status"] == "succeeded"

    by_charge = conn.call("stripe.createRefund", {"charge": charge_id, "amount": 300})
    assert by_charge["charge"] == charge_id and by_charge["amount"] == 300

    got = conn.call("stripe.getRefund", {"refundId": by_intent["id"]})
    assert got == by_intent

    listed = conn.call("stripe.listRefunds", {"charge": charge_id})
    assert {r["id"] for r in listed["data"]} == {by_intent["id"], by_charge["id"]}
    listed = conn.call("stripe.listRefunds", {"paymentIntent": intent["id"], "limit": 1})
    assert len(listed["data"]) == 1 and listed["has_more"] is True

    charge = conn.call("stripe.getCharge", {"chargeId": charge_id})
    assert charge["amount_refunded"] == 1500


# --------------------------------------------------------------------------
# (5) Products (prices: localstripe has none, see the module docstring)
# --------------------------------------------------------------------------


def test_products_create_get_update_list(conn: Conn):
    first = conn.call(
        "stripe.createProduct",
        {
            "name": "Widget",
            "description": "A fine widget",
            "url": "https://example.com/widget",
            "statementDescriptor": "WIDGET CO",
            "metadata": {"sku": "W-1"},
        },
    )
    assert first["object"] == "product" and first["id"].startswith("prod_")
    assert first["name"] == "Widget"
    assert first["description"] == "A fine widget"
    assert first["url"] == "https://example.com/widget"
    assert first["statement_descriptor"] == "WIDGET CO"
    assert first["active"] is True
    assert first["metadata"] == {"sku": "W-1"}
    second = conn.call("stripe.createProduct", {"name": "Gadget"})

    assert conn.call("stripe.getProduct", {"productId": first["id"]}) == first

    updated = conn.call(
        "stripe.updateProduct",
        {"productId": first["id"], "name": "Widget II", "description": "Better", "metadata": {"color": "red"}},
    )
    assert updated["id"] == first["id"]
    assert (updated["name"], updated["description"]) == ("Widget II", "Better")
    assert updated["metadata"] == {"sku": "W-1", "color": "red"}
    assert conn.call("stripe.getProduct", {"productId": first["id"]})["name"] == "Widget II"

    # localstripe lists oldest first: the one after `first` is `second`.
    page = conn.call("stripe.listProducts", {"startingAfter": first["id"], "limit": 1})
    assert page["object"] == "list"
    assert [p["id"] for p in page["data"]] == [second["id"]]
    everything = conn.call("stripe.listProducts", {"autoPaginate": True, "maxItems": 10000, "limit": 100})
    ids = [p["id"] for p in everything["data"]]
    assert everything["has_more"] is False
    assert ids.index(second["id"]) == ids.index(first["id"]) + 1
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------
# (6) Balance
# --------------------------------------------------------------------------


def test_balance_and_balance_transactions(conn: Conn, upstream: Upstream):
    balance = conn.call("stripe.getBalance")
    assert "available" in balance and "pending" in balance
    # Verbatim: what Stripe answers directly (localstripe's balance has no `object`).
    assert balance == upstream.direct(conn.secret, "GET", "/v1/balance").json()
    assert conn.call("stripe.getBalance", {}) == balance

    intent = conn.call(
        "stripe.createPaymentIntent",
        {"amount": 3100, "currency": "usd", "paymentMethod": "pm_card_visa", "confirm": True},
    )
    charge_txn = intent["latest_charge"]["balance_transaction"]
    refund = conn.call("stripe.createRefund", {"paymentIntent": intent["id"], "amount": 100})
    refund_txn = refund["balance_transaction"]
    assert charge_txn.startswith("txn_") and refund_txn.startswith("txn_")

    listed = conn.call("stripe.listBalanceTransactions", {"autoPaginate": True, "maxItems": 10000})
    by_id = {t["id"]: t for t in listed["data"]}
    assert listed["has_more"] is False
    assert (by_id[charge_txn]["amount"], by_id[charge_txn]["type"], by_id[charge_txn]["source"]) == (
        3100,
        "charge",
        intent["latest_charge"]["id"],
    )
    assert (by_id[refund_txn]["amount"], by_id[refund_txn]["type"], by_id[refund_txn]["source"]) == (
        -100,
        "refund",
        refund["id"],
    )
    page = conn.call("stripe.listBalanceTransactions", {"limit": 1})
    assert len(page["data"]) == 1 and page["has_more"] is True


# --------------------------------------------------------------------------
# (7) Auto-pagination over 250 customers
# --------------------------------------------------------------------------


def test_auto_pagination_over_250_customers(conn: Conn, upstream: Upstream):
    shared = email()  # localstripe's store is shared by every key: filter by email
    created = []
    for i in range(250):
        c = conn.call("stripe.createCustomer", {"email": shared, "name": f"Customer {i:03}"})
        created.append(c["id"])
    assert len(set(created)) == 250

    seq = upstream.last_seq()
    everything = conn.call("stripe.listCustomers", {"email": shared, "autoPaginate": True, "maxItems": 1000})
    assert everything["object"] == "list"
    assert everything["has_more"] is False
    # localstripe lists oldest first.
    assert [c["id"] for c in everything["data"]] == created
    assert [c["name"] for c in everything["data"]] == [f"Customer {i:03}" for i in range(250)]
    # Patchbay followed starting_after itself: pages of 100.
    pages = upstream.calls(conn.secret, seq)
    assert [(c["method"], c["path"]) for c in pages] == [("GET", "/v1/customers")] * 3
    assert [("starting_after" in c["query_keys"]) for c in pages] == [False, True, True]

    capped = conn.call("stripe.listCustomers", {"email": shared, "autoPaginate": True, "maxItems": 120})
    assert [c["id"] for c in capped["data"]] == created[:120]
    assert capped["has_more"] is True

    exact = conn.call("stripe.listCustomers", {"email": shared, "autoPaginate": True, "maxItems": 250, "limit": 50})
    assert [c["id"] for c in exact["data"]] == created
    assert exact["has_more"] is False

    # From a cursor: everything after the 200th.
    tail = conn.call(
        "stripe.listCustomers",
        {"email": shared, "autoPaginate": True, "maxItems": 1000, "startingAfter": created[199]},
    )
    assert [c["id"] for c in tail["data"]] == created[200:]
    assert tail["has_more"] is False

    # Without autoPaginate: one page of Stripe's, and the next by startingAfter.
    page = conn.call("stripe.listCustomers", {"email": shared, "limit": 100})
    assert [c["id"] for c in page["data"]] == created[:100]
    assert page["has_more"] is True
    page = conn.call("stripe.listCustomers", {"email": shared, "limit": 100, "startingAfter": created[99]})
    assert [c["id"] for c in page["data"]] == created[100:200]
    assert page["has_more"] is True


# --------------------------------------------------------------------------
# (8) Validation before any call
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action, config, code, param",
    [
        ("stripe.createCustomer", {"emial": "jane@example.com"}, "parameter_unknown", "config.emial"),
        ("stripe.createPaymentIntent", {"amount": 12.5, "currency": "usd"}, "parameter_invalid", "config.amount"),
        ("stripe.createPaymentIntent", {"amount": "2000", "currency": "usd"}, "parameter_invalid", "config.amount"),
        ("stripe.createPaymentIntent", {"amount": 0, "currency": "usd"}, "parameter_invalid", "config.amount"),
        ("stripe.createPaymentIntent", {"amount": 2000}, "parameter_missing", "config.currency"),
        ("stripe.createPaymentIntent", {"amount": 2000, "currency": "usdollar"}, "parameter_invalid", "config.currency"),
        ("stripe.createRefund", {"charge": "ch_123", "amount": -1}, "parameter_invalid", "config.amount"),
        ("stripe.getCustomer", {"customerId": "in_123"}, "parameter_invalid", "config.customerId"),
        ("stripe.getCustomer", {}, "parameter_missing", "config.customerId"),
        ("stripe.createCustomer", {"address": {"line1": "x", "zip": "75001"}}, "parameter_unknown", "config.address.zip"),
        ("stripe.listCustomers", {"limit": 101}, "parameter_invalid", "config.limit"),
        ("stripe.listCustomers", {"limit": 0}, "parameter_invalid", "config.limit"),
        ("stripe.listCustomers", {"startingAfter": "cus_a", "endingBefore": "cus_b"}, "parameter_invalid", "config.endingBefore"),
        ("stripe.listCustomers", {"autoPaginate": True}, "parameter_missing", "config.maxItems"),
        ("stripe.listCustomers", {"autoPaginate": True, "maxItems": 10001}, "parameter_invalid", "config.maxItems"),
        ("stripe.listCustomers", {"maxItems": 10}, "parameter_invalid", "config.maxItems"),
        ("stripe.getCustomer", {"customerId": "cus_1", "limit": 5}, "parameter_unknown", "config.limit"),
    ],
)
def test_invalid_configs_are_refused_naming_the_field_and_nothing_is_sent(
    conn: Conn, upstream: Upstream, action: str, config: dict, code: str, param: str
):
    seq = upstream.last_seq()
    err = error(conn.post({"action": action, "config": config}), 422, code, param)
    assert err["type"] == "invalid_request_error"
    if code == "parameter_unknown" and param == "config.emial":
        assert "email" in err["message"]  # the nearest field is suggested
    assert upstream.calls(conn.secret, seq) == []


def test_unknown_action_is_404_with_a_suggestion(conn: Conn, upstream: Upstream):
    seq = upstream.last_seq()
    err = error(conn.post({"action": "stripe.createCustomr", "config": {"email": "x@example.com"}}), 404, "action_unknown")
    assert err["param"] == "action"
    assert "stripe.createCustomer" in err["message"]
    err = error(conn.post({"action": "stripe.refundEverything", "config": {}}), 404, "action_unknown")
    assert "stripe.refundEverything" in err["message"]
    # The catalogue answers the same for one action by name.
    err = error(conn.api.get("/api/v1/actions/stripe.getCustomr"), 404, "action_unknown")
    assert "stripe.getCustomer" in err["message"]
    assert upstream.calls(conn.secret, seq) == []


def test_a_key_without_the_proxy_scope_is_refused(conn: Conn, upstream: Upstream):
    _, api = conn.tenant.new_key(["connections:write"], name="no-proxy")
    seq = upstream.last_seq()
    r = api.post(f"/api/v1/connections/{conn.id}/actions", json={"action": "stripe.listCustomers", "config": {}})
    error(r, 403, "insufficient_scope")
    assert upstream.calls(conn.secret, seq) == []


def test_another_tenants_connection_is_not_found(conn: Conn, other_tenant: Tenant, upstream: Upstream):
    theirs = make_conn(other_tenant)
    seq = upstream.last_seq()
    r = conn.api.post(f"/api/v1/connections/{theirs.id}/actions", json={"action": "stripe.listCustomers", "config": {}})
    error(r, 404)
    assert upstream.calls(theirs.secret, seq) == []


# --------------------------------------------------------------------------
# Idempotency keys
# --------------------------------------------------------------------------


def test_writes_carry_an_idempotency_key_returned_in_a_header(conn: Conn, upstream: Upstream):
    given = unique("idem")
    r = conn.post({"action": "stripe.createCustomer", "config": {"email": email(), "idempotencyKey": given}})
    ok(r)
    assert r.headers.get("idempotency-key") == given

    from_header = unique("idem-header")
    r = conn.post({"action": "stripe.createCustomer", "config": {"email": email()}}, headers={"Idempotency-Key": from_header})
    ok(r)
    assert r.headers.get("idempotency-key") == from_header

    seq = upstream.last_seq()
    r = conn.post({"action": "stripe.createCustomer", "config": {"email": email()}})
    ok(r)
    generated = r.headers.get("idempotency-key")
    assert generated, f"no Idempotency-Key header on a write whose key Patchbay generated: {dict(r.headers)}"
    sent = upstream.calls(conn.secret, seq)
    assert [(c["method"], "idempotency-key" in c["header_names"]) for c in sent] == [("POST", True)]

    # A read carries none.
    r = conn.post({"action": "stripe.getBalance"})
    ok(r)
    assert "idempotency-key" not in r.headers


# --------------------------------------------------------------------------
# (9) Audit
# --------------------------------------------------------------------------


def test_every_call_is_audited(conn: Conn, admin: Api, upstream: Upstream):
    customer_email = email()
    customer = conn.call("stripe.createCustomer", {"email": customer_email, "name": "Audited"})
    conn.call("stripe.getCustomer", {"customerId": customer["id"]})
    conn.call("stripe.listCustomers", {"email": customer_email, "autoPaginate": True, "maxItems": 10})
    missing = conn.stripe_error("stripe.getCustomer", {"customerId": "cus_" + "Y" * 14})
    assert missing.status_code == 404
    expected = [
        ("stripe.createCustomer", 200),
        ("stripe.getCustomer", 200),
        ("stripe.listCustomers", 200),
        ("stripe.getCustomer", 404),
    ]

    def events() -> list[dict]:
        page = ok(
            admin.get(
                "/api/v1/audit-events",
                params={"action": "action.called", "tenant_id": conn.tenant.id, "limit": 100},
            )
        )
        return page["data"] if len(page["data"]) >= len(expected) else []

    listed = wait_for(events, timeout=15, what="the action.called audit events")
    assert len(listed) == len(expected), listed
    # Newest first.
    assert [(e["details"]["action"], e["details"]["status"]) for e in reversed(listed)] == expected
    for e in listed:
        assert e["object"] == "audit_event"
        assert e["action"] == "action.called"
        assert e["tenant_id"] == conn.tenant.id
        assert e["actor"] == conn.key_id
        assert e["target_id"] == conn.id
        assert isinstance(e["details"]["duration_ms"], int) and e["details"]["duration_ms"] >= 0
        assert "stripe_request_id" in e["details"]  # localstripe sends no Request-Id
        assert e["request_id"].startswith("req_")
        # Never bodies or secrets.
        text = str(e)
        assert customer_email not in text and "Audited" not in text
        assert conn.secret not in text

    # The tenant's own admin key sees the same events.
    mine = ok(conn.tenant.api.get("/api/v1/audit-events", params={"action": "action.called", "limit": 100}))
    assert [e["id"] for e in mine["data"]] == [e["id"] for e in listed]
