//! Every action of the catalogue, one call each, through the real router with
//! wiremock as Stripe: the method, the path and the exact form (POST) or query
//! (GET, DELETE) pairs Stripe receives.
//!
//! The expected pairs are written out by hand from Stripe's documented
//! encoding (`address[line1]`, `items[0][price]`, `metadata[k]`, `expand[0]`,
//! `created[gte]`, booleans as `true`/`false`, currencies lower case, path ids
//! never repeated as parameters), not computed by the engine. A catalogue
//! action without a row here fails `every_catalogue_action_has_a_row`.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, Request, ResponseTemplate};

use crate::connections::{SK, account, account_for};
use crate::support::TestApp;

/// One call and what Stripe must receive for it.
struct Row {
    action: &'static str,
    config: Value,
    method: &'static str,
    path: &'static str,
    /// Decoded form (POST) or query (GET, DELETE) pairs, in any order.
    pairs: &'static [(&'static str, &'static str)],
    /// Headers Stripe must receive (lower-case names).
    headers: &'static [(&'static str, &'static str)],
}

fn row(
    action: &'static str,
    config: Value,
    method: &'static str,
    path: &'static str,
    pairs: &'static [(&'static str, &'static str)],
) -> Row {
    Row {
        action,
        config,
        method,
        path,
        pairs,
        headers: &[],
    }
}

impl Row {
    fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    vec![
        // --- Customers ----------------------------------------------------------
        row("stripe.getCustomer",
            json!({"customerId": "cus_Q1a2B3", "expand": ["default_source", "invoice_settings.default_payment_method"]}),
            "GET", "/v1/customers/cus_Q1a2B3",
            &[("expand[0]", "default_source"), ("expand[1]", "invoice_settings.default_payment_method")]),
        row("stripe.createCustomer",
            json!({
                "email": "jane@example.com", "name": "Jane Doe", "phone": "+14155550100", "description": "VIP",
                "address": {"line1": "1 Main St", "line2": "Suite 5", "city": "San Francisco", "state": "CA",
                            "postal_code": "94107", "country": "US"},
                "shipping": {"name": "Jane Doe", "phone": "+14155550101",
                             "address": {"line1": "2 Dock Rd", "postal_code": "94110", "country": "US"}},
                "invoiceSettings": {"default_payment_method": "pm_card_visa", "footer": "Thanks",
                                    "custom_fields": [{"name": "PO", "value": "PO-7"}, {"name": "Ref", "value": "R&D=1"}]},
                "preferredLocales": ["en", "fr-FR"],
                "taxExempt": "none",
                "metadata": {"source": "workflow", "note": "a&b=c ü"},
                "paymentMethod": "pm_card_visa",
                "expand": ["tax"],
                "idempotencyKey": "create-customer-1",
                "stripeAccount": "acct_1Connected"
            }),
            "POST", "/v1/customers",
            &[
                ("address[city]", "San Francisco"),
                ("address[country]", "US"),
                ("address[line1]", "1 Main St"),
                ("address[line2]", "Suite 5"),
                ("address[postal_code]", "94107"),
                ("address[state]", "CA"),
                ("description", "VIP"),
                ("email", "jane@example.com"),
                ("expand[0]", "tax"),
                ("invoice_settings[custom_fields][0][name]", "PO"),
                ("invoice_settings[custom_fields][0][value]", "PO-7"),
                ("invoice_settings[custom_fields][1][name]", "Ref"),
                ("invoice_settings[custom_fields][1][value]", "R&D=1"),
                ("invoice_settings[default_payment_method]", "pm_card_visa"),
                ("invoice_settings[footer]", "Thanks"),
                ("metadata[note]", "a&b=c ü"),
                ("metadata[source]", "workflow"),
                ("name", "Jane Doe"),
                ("payment_method", "pm_card_visa"),
                ("phone", "+14155550100"),
                ("preferred_locales[0]", "en"),
                ("preferred_locales[1]", "fr-FR"),
                ("shipping[address][country]", "US"),
                ("shipping[address][line1]", "2 Dock Rd"),
                ("shipping[address][postal_code]", "94110"),
                ("shipping[name]", "Jane Doe"),
                ("shipping[phone]", "+14155550101"),
                ("tax_exempt", "none"),
            ])
            .headers(&[("idempotency-key", "create-customer-1"), ("stripe-account", "acct_1Connected")]),
        // Empty strings unset a field or a metadata key, as Stripe documents.
        row("stripe.updateCustomer",
            json!({"customerId": "cus_Q1a2B3", "email": "new@example.com", "description": "",
                   "address": {"country": "DE"}, "taxExempt": "reverse",
                   "invoiceSettings": {"default_payment_method": "pm_1Abc"},
                   "metadata": {"tier": "gold", "old": ""}}),
            "POST", "/v1/customers/cus_Q1a2B3",
            &[
                ("address[country]", "DE"),
                ("description", ""),
                ("email", "new@example.com"),
                ("invoice_settings[default_payment_method]", "pm_1Abc"),
                ("metadata[old]", ""),
                ("metadata[tier]", "gold"),
                ("tax_exempt", "reverse"),
            ]),
        row("stripe.deleteCustomer",
            json!({"customerId": "cus_Q1a2B3"}),
            "DELETE", "/v1/customers/cus_Q1a2B3",
            &[]),
        // A `+` in a query value must arrive as a `+`, not a space.
        row("stripe.listCustomers",
            json!({"email": "jane+vip@example.com", "created": {"gte": 1_700_000_000, "lt": 1_710_000_000},
                   "limit": 10, "startingAfter": "cus_prev", "expand": ["data.default_source"]}),
            "GET", "/v1/customers",
            &[
                ("created[gte]", "1700000000"),
                ("created[lt]", "1710000000"),
                ("email", "jane+vip@example.com"),
                ("expand[0]", "data.default_source"),
                ("limit", "10"),
                ("starting_after", "cus_prev"),
            ]),
        row("stripe.searchCustomers",
            json!({"query": "email:'jane@example.com' AND metadata['tier']:'gold'", "limit": 5, "page": "pg_abc"}),
            "GET", "/v1/customers/search",
            &[
                ("limit", "5"),
                ("page", "pg_abc"),
                ("query", "email:'jane@example.com' AND metadata['tier']:'gold'"),
            ]),
        // --- Charges ------------------------------------------------------------
        // The currency is sent lower case.
        row("stripe.createCharge",
            json!({"amount": 2000, "currency": "USD", "customerId": "cus_Q1a2B3", "source": "card_1Abc",
                   "description": "Order 6735", "capture": false, "receiptEmail": "jane@example.com",
                   "statementDescriptor": "ACME ORDER", "statementDescriptorSuffix": "6735",
                   "shipping": {"name": "Jane Doe", "carrier": "UPS", "tracking_number": "1Z999",
                                "address": {"line1": "2 Dock Rd", "city": "Oakland", "country": "US"}},
                   "metadata": {"order": "6735"}, "expand": ["balance_transaction"]}),
            "POST", "/v1/charges",
            &[
                ("amount", "2000"),
                ("capture", "false"),
                ("currency", "usd"),
                ("customer", "cus_Q1a2B3"),
                ("description", "Order 6735"),
                ("expand[0]", "balance_transaction"),
                ("metadata[order]", "6735"),
                ("receipt_email", "jane@example.com"),
                ("shipping[address][city]", "Oakland"),
                ("shipping[address][country]", "US"),
                ("shipping[address][line1]", "2 Dock Rd"),
                ("shipping[carrier]", "UPS"),
                ("shipping[name]", "Jane Doe"),
                ("shipping[tracking_number]", "1Z999"),
                ("source", "card_1Abc"),
                ("statement_descriptor", "ACME ORDER"),
                ("statement_descriptor_suffix", "6735"),
            ]),
        row("stripe.getCharge",
            json!({"chargeId": "py_1Abc", "expand": ["customer", "balance_transaction"]}),
            "GET", "/v1/charges/py_1Abc",
            &[("expand[0]", "customer"), ("expand[1]", "balance_transaction")]),
        row("stripe.listCharges",
            json!({"customerId": "cus_Q1a2B3", "paymentIntent": "pi_1Abc",
                   "created": {"gt": 1_700_000_000, "lte": 1_710_000_000}, "limit": 3, "endingBefore": "ch_next"}),
            "GET", "/v1/charges",
            &[
                ("created[gt]", "1700000000"),
                ("created[lte]", "1710000000"),
                ("customer", "cus_Q1a2B3"),
                ("ending_before", "ch_next"),
                ("limit", "3"),
                ("payment_intent", "pi_1Abc"),
            ]),
        row("stripe.captureCharge",
            json!({"chargeId": "ch_1Abc", "amount": 1500, "receiptEmail": "jane@example.com",
                   "statementDescriptor": "ACME", "statementDescriptorSuffix": "CAP", "expand": ["balance_transaction"]}),
            "POST", "/v1/charges/ch_1Abc/capture",
            &[
                ("amount", "1500"),
                ("expand[0]", "balance_transaction"),
                ("receipt_email", "jane@example.com"),
                ("statement_descriptor", "ACME"),
                ("statement_descriptor_suffix", "CAP"),
            ]),
        // --- Payment intents ----------------------------------------------------
        row("stripe.createPaymentIntent",
            json!({"amount": 2000, "currency": "usd", "customerId": "cus_Q1a2B3", "description": "Order 6735",
                   "paymentMethodTypes": ["card", "link"], "paymentMethod": "pm_card_visa",
                   "captureMethod": "manual", "confirm": true, "offSession": true,
                   "setupFutureUsage": "off_session", "receiptEmail": "jane@example.com",
                   "statementDescriptorSuffix": "6735",
                   "shipping": {"name": "Jane Doe", "address": {"line1": "2 Dock Rd", "country": "US"}},
                   "metadata": {"order": "6735", "channel": "web"}, "expand": ["latest_charge"]}),
            "POST", "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("capture_method", "manual"),
                ("confirm", "true"),
                ("currency", "usd"),
                ("customer", "cus_Q1a2B3"),
                ("description", "Order 6735"),
                ("expand[0]", "latest_charge"),
                ("metadata[channel]", "web"),
                ("metadata[order]", "6735"),
                ("off_session", "true"),
                ("payment_method", "pm_card_visa"),
                ("payment_method_types[0]", "card"),
                ("payment_method_types[1]", "link"),
                ("receipt_email", "jane@example.com"),
                ("setup_future_usage", "off_session"),
                ("shipping[address][country]", "US"),
                ("shipping[address][line1]", "2 Dock Rd"),
                ("shipping[name]", "Jane Doe"),
                ("statement_descriptor_suffix", "6735"),
            ]),
        row("stripe.createPaymentIntent",
            json!({"amount": 999, "currency": "eur", "returnUrl": "https://example.com/done?order=1&step=2",
                   "automaticPaymentMethods": {"enabled": true, "allow_redirects": "never"}}),
            "POST", "/v1/payment_intents",
            &[
                ("amount", "999"),
                ("automatic_payment_methods[allow_redirects]", "never"),
                ("automatic_payment_methods[enabled]", "true"),
                ("currency", "eur"),
                ("return_url", "https://example.com/done?order=1&step=2"),
            ]),
        row("stripe.getPaymentIntent",
            json!({"paymentIntentId": "pi_1Abc", "expand": ["latest_charge"], "stripeVersion": "2024-06-20"}),
            "GET", "/v1/payment_intents/pi_1Abc",
            &[("expand[0]", "latest_charge")])
            .headers(&[("stripe-version", "2024-06-20")]),
        row("stripe.updatePaymentIntent",
            json!({"paymentIntentId": "pi_1Abc", "amount": 2500, "currency": "eur", "customerId": "cus_Q1a2B3",
                   "description": "Order 6736", "paymentMethodTypes": ["card"], "paymentMethod": "pm_1Abc",
                   "captureMethod": "automatic_async", "setupFutureUsage": "on_session",
                   "receiptEmail": "jane@example.com", "statementDescriptorSuffix": "6736",
                   "shipping": {"name": "Jane Doe", "address": {"line1": "2 Dock Rd", "country": "US"}},
                   "metadata": {"order": "6736"}}),
            "POST", "/v1/payment_intents/pi_1Abc",
            &[
                ("amount", "2500"),
                ("capture_method", "automatic_async"),
                ("currency", "eur"),
                ("customer", "cus_Q1a2B3"),
                ("description", "Order 6736"),
                ("metadata[order]", "6736"),
                ("payment_method", "pm_1Abc"),
                ("payment_method_types[0]", "card"),
                ("receipt_email", "jane@example.com"),
                ("setup_future_usage", "on_session"),
                ("shipping[address][country]", "US"),
                ("shipping[address][line1]", "2 Dock Rd"),
                ("shipping[name]", "Jane Doe"),
                ("statement_descriptor_suffix", "6736"),
            ]),
        row("stripe.confirmPaymentIntent",
            json!({"paymentIntentId": "pi_1Abc", "paymentMethod": "pm_card_visa",
                   "returnUrl": "https://example.com/return", "offSession": false, "captureMethod": "manual",
                   "receiptEmail": "jane@example.com", "setupFutureUsage": "off_session"}),
            "POST", "/v1/payment_intents/pi_1Abc/confirm",
            &[
                ("capture_method", "manual"),
                ("off_session", "false"),
                ("payment_method", "pm_card_visa"),
                ("receipt_email", "jane@example.com"),
                ("return_url", "https://example.com/return"),
                ("setup_future_usage", "off_session"),
            ]),
        row("stripe.capturePaymentIntent",
            json!({"paymentIntentId": "pi_1Abc", "amountToCapture": 1500, "statementDescriptorSuffix": "CAP",
                   "metadata": {"captured_by": "workflow"}}),
            "POST", "/v1/payment_intents/pi_1Abc/capture",
            &[
                ("amount_to_capture", "1500"),
                ("metadata[captured_by]", "workflow"),
                ("statement_descriptor_suffix", "CAP"),
            ]),
        row("stripe.cancelPaymentIntent",
            json!({"paymentIntentId": "pi_1Abc", "cancellationReason": "requested_by_customer"}),
            "POST", "/v1/payment_intents/pi_1Abc/cancel",
            &[("cancellation_reason", "requested_by_customer")]),
        row("stripe.listPaymentIntents",
            json!({"customerId": "cus_Q1a2B3", "created": {"gte": 1_700_000_000}, "limit": 100}),
            "GET", "/v1/payment_intents",
            &[("created[gte]", "1700000000"), ("customer", "cus_Q1a2B3"), ("limit", "100")]),
        // --- Invoices -----------------------------------------------------------
        row("stripe.createInvoice",
            json!({"customerId": "cus_Q1a2B3", "autoAdvance": false, "collectionMethod": "send_invoice",
                   "daysUntilDue": 30, "description": "March services", "metadata": {"project": "apollo"},
                   "currency": "usd", "footer": "Net 30", "pendingInvoiceItemsBehavior": "include",
                   "expand": ["customer"], "idempotencyKey": "inv-2024-03"}),
            "POST", "/v1/invoices",
            &[
                ("auto_advance", "false"),
                ("collection_method", "send_invoice"),
                ("currency", "usd"),
                ("customer", "cus_Q1a2B3"),
                ("days_until_due", "30"),
                ("description", "March services"),
                ("expand[0]", "customer"),
                ("footer", "Net 30"),
                ("metadata[project]", "apollo"),
                ("pending_invoice_items_behavior", "include"),
            ])
            .headers(&[("idempotency-key", "inv-2024-03")]),
        row("stripe.createInvoice",
            json!({"customerId": "cus_Q1a2B3", "subscription": "sub_1Abc", "defaultPaymentMethod": "pm_1Abc",
                   "dueDate": 1_720_000_000}),
            "POST", "/v1/invoices",
            &[
                ("customer", "cus_Q1a2B3"),
                ("default_payment_method", "pm_1Abc"),
                ("due_date", "1720000000"),
                ("subscription", "sub_1Abc"),
            ]),
        // A negative amount is a credit.
        row("stripe.createInvoiceItem",
            json!({"customerId": "cus_Q1a2B3", "invoiceId": "in_1Abc", "amount": -500, "currency": "usd",
                   "description": "Loyalty credit", "discountable": false,
                   "period": {"start": 1_700_000_000, "end": 1_702_592_000}, "metadata": {"reason": "loyalty"}}),
            "POST", "/v1/invoiceitems",
            &[
                ("amount", "-500"),
                ("currency", "usd"),
                ("customer", "cus_Q1a2B3"),
                ("description", "Loyalty credit"),
                ("discountable", "false"),
                ("invoice", "in_1Abc"),
                ("metadata[reason]", "loyalty"),
                ("period[end]", "1702592000"),
                ("period[start]", "1700000000"),
            ]),
        row("stripe.createInvoiceItem",
            json!({"customerId": "cus_Q1a2B3", "pricing": {"price": "price_1Seat"}, "quantity": 3}),
            "POST", "/v1/invoiceitems",
            &[("customer", "cus_Q1a2B3"), ("pricing[price]", "price_1Seat"), ("quantity", "3")]),
        row("stripe.getInvoice",
            json!({"invoiceId": "in_1Abc", "expand": ["customer", "payments"]}),
            "GET", "/v1/invoices/in_1Abc",
            &[("expand[0]", "customer"), ("expand[1]", "payments")]),
        row("stripe.listInvoices",
            json!({"customerId": "cus_Q1a2B3", "status": "open", "subscription": "sub_1Abc",
                   "collectionMethod": "send_invoice", "created": {"lt": 1_710_000_000}, "limit": 20,
                   "expand": ["data.customer"]}),
            "GET", "/v1/invoices",
            &[
                ("collection_method", "send_invoice"),
                ("created[lt]", "1710000000"),
                ("customer", "cus_Q1a2B3"),
                ("expand[0]", "data.customer"),
                ("limit", "20"),
                ("status", "open"),
                ("subscription", "sub_1Abc"),
            ]),
        row("stripe.finalizeInvoice",
            json!({"invoiceId": "in_1Abc", "autoAdvance": true}),
            "POST", "/v1/invoices/in_1Abc/finalize",
            &[("auto_advance", "true")]),
        row("stripe.sendInvoice",
            json!({"invoiceId": "in_1Abc", "idempotencyKey": "send-in_1Abc"}),
            "POST", "/v1/invoices/in_1Abc/send",
            &[])
            .headers(&[("idempotency-key", "send-in_1Abc")]),
        row("stripe.voidInvoice",
            json!({"invoiceId": "in_1Abc", "expand": ["customer"]}),
            "POST", "/v1/invoices/in_1Abc/void",
            &[("expand[0]", "customer")]),
        row("stripe.payInvoice",
            json!({"invoiceId": "in_1Abc", "paymentMethod": "pm_card_visa", "offSession": true, "forgive": false}),
            "POST", "/v1/invoices/in_1Abc/pay",
            &[("forgive", "false"), ("off_session", "true"), ("payment_method", "pm_card_visa")]),
        row("stripe.payInvoice",
            json!({"invoiceId": "in_1Abc", "paidOutOfBand": true}),
            "POST", "/v1/invoices/in_1Abc/pay",
            &[("paid_out_of_band", "true")]),
        // --- Subscriptions ------------------------------------------------------
        row("stripe.createSubscription",
            json!({"customerId": "cus_Q1a2B3",
                   "items": [{"price": "price_basic", "quantity": 2, "metadata": {"seat": "a"}},
                             {"price": "price_addon"}],
                   "trialPeriodDays": 14, "currency": "usd", "defaultPaymentMethod": "pm_1Abc",
                   "collectionMethod": "charge_automatically", "cancelAtPeriodEnd": false,
                   "prorationBehavior": "create_prorations", "paymentBehavior": "default_incomplete",
                   "description": "Pro plan", "metadata": {"plan": "pro"},
                   "expand": ["latest_invoice.payment_intent"]}),
            "POST", "/v1/subscriptions",
            &[
                ("cancel_at_period_end", "false"),
                ("collection_method", "charge_automatically"),
                ("currency", "usd"),
                ("customer", "cus_Q1a2B3"),
                ("default_payment_method", "pm_1Abc"),
                ("description", "Pro plan"),
                ("expand[0]", "latest_invoice.payment_intent"),
                ("items[0][metadata][seat]", "a"),
                ("items[0][price]", "price_basic"),
                ("items[0][quantity]", "2"),
                ("items[1][price]", "price_addon"),
                ("metadata[plan]", "pro"),
                ("payment_behavior", "default_incomplete"),
                ("proration_behavior", "create_prorations"),
                ("trial_period_days", "14"),
            ]),
        row("stripe.createSubscription",
            json!({"customerId": "cus_Q1a2B3", "items": [{"price": "price_basic"}],
                   "collectionMethod": "send_invoice", "daysUntilDue": 15, "trialEnd": 1_720_000_000}),
            "POST", "/v1/subscriptions",
            &[
                ("collection_method", "send_invoice"),
                ("customer", "cus_Q1a2B3"),
                ("days_until_due", "15"),
                ("items[0][price]", "price_basic"),
                ("trial_end", "1720000000"),
            ]),
        row("stripe.getSubscription",
            json!({"subscriptionId": "sub_1Abc", "expand": ["latest_invoice", "customer"]}),
            "GET", "/v1/subscriptions/sub_1Abc",
            &[("expand[0]", "latest_invoice"), ("expand[1]", "customer")]),
        row("stripe.updateSubscription",
            json!({"subscriptionId": "sub_1Abc",
                   "items": [{"id": "si_old", "deleted": true},
                             {"price": "price_new", "quantity": 1, "metadata": {"swap": "yes"}}],
                   "prorationBehavior": "always_invoice", "prorationDate": 1_700_000_000,
                   "cancelAtPeriodEnd": true, "paymentBehavior": "pending_if_incomplete",
                   "defaultPaymentMethod": "pm_1Abc", "description": "Upgraded",
                   "metadata": {"plan": "enterprise", "old": ""}}),
            "POST", "/v1/subscriptions/sub_1Abc",
            &[
                ("cancel_at_period_end", "true"),
                ("default_payment_method", "pm_1Abc"),
                ("description", "Upgraded"),
                ("items[0][deleted]", "true"),
                ("items[0][id]", "si_old"),
                ("items[1][metadata][swap]", "yes"),
                ("items[1][price]", "price_new"),
                ("items[1][quantity]", "1"),
                ("metadata[old]", ""),
                ("metadata[plan]", "enterprise"),
                ("payment_behavior", "pending_if_incomplete"),
                ("proration_behavior", "always_invoice"),
                ("proration_date", "1700000000"),
            ]),
        // DELETE: the parameters go in the query string.
        row("stripe.cancelSubscription",
            json!({"subscriptionId": "sub_1Abc", "invoiceNow": true, "prorate": false,
                   "cancellationDetails": {"comment": "Too pricey & slow", "feedback": "too_expensive"}}),
            "DELETE", "/v1/subscriptions/sub_1Abc",
            &[
                ("cancellation_details[comment]", "Too pricey & slow"),
                ("cancellation_details[feedback]", "too_expensive"),
                ("invoice_now", "true"),
                ("prorate", "false"),
            ]),
        row("stripe.listSubscriptions",
            json!({"customerId": "cus_Q1a2B3", "status": "all", "price": "price_basic",
                   "collectionMethod": "charge_automatically",
                   "created": {"gte": 1_700_000_000, "lte": 1_710_000_000}, "limit": 50,
                   "startingAfter": "sub_prev"}),
            "GET", "/v1/subscriptions",
            &[
                ("collection_method", "charge_automatically"),
                ("created[gte]", "1700000000"),
                ("created[lte]", "1710000000"),
                ("customer", "cus_Q1a2B3"),
                ("limit", "50"),
                ("price", "price_basic"),
                ("starting_after", "sub_prev"),
                ("status", "all"),
            ]),
        // --- Products and prices ------------------------------------------------
        row("stripe.createProduct",
            json!({"name": "Pro plan", "description": "Everything", "active": true,
                   "images": ["https://img.example.com/1.png", "https://img.example.com/2.png"],
                   "url": "https://example.com/pro", "statementDescriptor": "ACME PRO", "unitLabel": "seat",
                   "taxCode": "txcd_10103001", "shippable": false, "metadata": {"tier": "pro"},
                   "defaultPriceData": {"currency": "usd", "unit_amount": 1500, "tax_behavior": "exclusive",
                                        "recurring": {"interval": "month", "interval_count": 1}}}),
            "POST", "/v1/products",
            &[
                ("active", "true"),
                ("default_price_data[currency]", "usd"),
                ("default_price_data[recurring][interval]", "month"),
                ("default_price_data[recurring][interval_count]", "1"),
                ("default_price_data[tax_behavior]", "exclusive"),
                ("default_price_data[unit_amount]", "1500"),
                ("description", "Everything"),
                ("images[0]", "https://img.example.com/1.png"),
                ("images[1]", "https://img.example.com/2.png"),
                ("metadata[tier]", "pro"),
                ("name", "Pro plan"),
                ("shippable", "false"),
                ("statement_descriptor", "ACME PRO"),
                ("tax_code", "txcd_10103001"),
                ("unit_label", "seat"),
                ("url", "https://example.com/pro"),
            ]),
        row("stripe.getProduct",
            json!({"productId": "prod_NWjs8kKbJWmuuc"}),
            "GET", "/v1/products/prod_NWjs8kKbJWmuuc",
            &[]),
        row("stripe.updateProduct",
            json!({"productId": "prod_NWjs8kKbJWmuuc", "name": "Pro plan 2", "defaultPrice": "price_1New",
                   "active": false, "shippable": true, "images": ["https://img.example.com/3.png"],
                   "description": "More", "url": "https://example.com/pro2", "statementDescriptor": "ACME PRO2",
                   "unitLabel": "user", "taxCode": "txcd_10000000", "metadata": {"tier": "pro2", "legacy": ""}}),
            "POST", "/v1/products/prod_NWjs8kKbJWmuuc",
            &[
                ("active", "false"),
                ("default_price", "price_1New"),
                ("description", "More"),
                ("images[0]", "https://img.example.com/3.png"),
                ("metadata[legacy]", ""),
                ("metadata[tier]", "pro2"),
                ("name", "Pro plan 2"),
                ("shippable", "true"),
                ("statement_descriptor", "ACME PRO2"),
                ("tax_code", "txcd_10000000"),
                ("unit_label", "user"),
                ("url", "https://example.com/pro2"),
            ]),
        row("stripe.listProducts",
            json!({"active": true, "shippable": false, "url": "https://example.com/pro",
                   "ids": ["prod_1", "prod_2"], "created": {"gt": 1_700_000_000}, "limit": 2}),
            "GET", "/v1/products",
            &[
                ("active", "true"),
                ("created[gt]", "1700000000"),
                ("ids[0]", "prod_1"),
                ("ids[1]", "prod_2"),
                ("limit", "2"),
                ("shippable", "false"),
                ("url", "https://example.com/pro"),
            ]),
        row("stripe.createPrice",
            json!({"currency": "usd", "unitAmount": 1500, "product": "prod_NWjs8kKbJWmuuc",
                   "recurring": {"interval": "year", "interval_count": 1, "usage_type": "licensed"},
                   "nickname": "Pro yearly", "lookupKey": "pro_yearly", "taxBehavior": "inclusive",
                   "billingScheme": "per_unit", "active": true, "metadata": {"tier": "pro"}}),
            "POST", "/v1/prices",
            &[
                ("active", "true"),
                ("billing_scheme", "per_unit"),
                ("currency", "usd"),
                ("lookup_key", "pro_yearly"),
                ("metadata[tier]", "pro"),
                ("nickname", "Pro yearly"),
                ("product", "prod_NWjs8kKbJWmuuc"),
                ("recurring[interval]", "year"),
                ("recurring[interval_count]", "1"),
                ("recurring[usage_type]", "licensed"),
                ("tax_behavior", "inclusive"),
                ("unit_amount", "1500"),
            ]),
        row("stripe.createPrice",
            json!({"currency": "eur", "unitAmountDecimal": "12.5",
                   "productData": {"name": "API calls", "active": true, "statement_descriptor": "ACME API",
                                   "unit_label": "call", "tax_code": "txcd_10000000", "metadata": {"kind": "metered"}},
                   "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_1Abc"}}),
            "POST", "/v1/prices",
            &[
                ("currency", "eur"),
                ("product_data[active]", "true"),
                ("product_data[metadata][kind]", "metered"),
                ("product_data[name]", "API calls"),
                ("product_data[statement_descriptor]", "ACME API"),
                ("product_data[tax_code]", "txcd_10000000"),
                ("product_data[unit_label]", "call"),
                ("recurring[interval]", "month"),
                ("recurring[meter]", "mtr_1Abc"),
                ("recurring[usage_type]", "metered"),
                ("unit_amount_decimal", "12.5"),
            ]),
        row("stripe.getPrice",
            json!({"priceId": "price_1Abc", "expand": ["product"]}),
            "GET", "/v1/prices/price_1Abc",
            &[("expand[0]", "product")]),
        row("stripe.listPrices",
            json!({"active": true, "currency": "usd", "product": "prod_NWjs8kKbJWmuuc", "type": "recurring",
                   "lookupKeys": ["pro_monthly", "pro_yearly"],
                   "recurring": {"interval": "month", "usage_type": "licensed"},
                   "created": {"gte": 1_700_000_000}, "limit": 10, "expand": ["data.product"]}),
            "GET", "/v1/prices",
            &[
                ("active", "true"),
                ("created[gte]", "1700000000"),
                ("currency", "usd"),
                ("expand[0]", "data.product"),
                ("limit", "10"),
                ("lookup_keys[0]", "pro_monthly"),
                ("lookup_keys[1]", "pro_yearly"),
                ("product", "prod_NWjs8kKbJWmuuc"),
                ("recurring[interval]", "month"),
                ("recurring[usage_type]", "licensed"),
                ("type", "recurring"),
            ]),
        // --- Payment methods ----------------------------------------------------
        row("stripe.listPaymentMethods",
            json!({"customerId": "cus_Q1a2B3", "type": "card", "allowRedisplay": "always", "limit": 5}),
            "GET", "/v1/payment_methods",
            &[("allow_redisplay", "always"), ("customer", "cus_Q1a2B3"), ("limit", "5"), ("type", "card")]),
        row("stripe.attachPaymentMethod",
            json!({"paymentMethodId": "pm_1Abc", "customerId": "cus_Q1a2B3"}),
            "POST", "/v1/payment_methods/pm_1Abc/attach",
            &[("customer", "cus_Q1a2B3")]),
        row("stripe.detachPaymentMethod",
            json!({"paymentMethodId": "pm_1Abc"}),
            "POST", "/v1/payment_methods/pm_1Abc/detach",
            &[]),
        // --- Refunds ------------------------------------------------------------
        row("stripe.createRefund",
            json!({"charge": "ch_1Abc", "amount": 500, "reason": "requested_by_customer",
                   "refundApplicationFee": true, "reverseTransfer": false, "metadata": {"ticket": "T-42"}}),
            "POST", "/v1/refunds",
            &[
                ("amount", "500"),
                ("charge", "ch_1Abc"),
                ("metadata[ticket]", "T-42"),
                ("reason", "requested_by_customer"),
                ("refund_application_fee", "true"),
                ("reverse_transfer", "false"),
            ]),
        row("stripe.createRefund",
            json!({"paymentIntent": "pi_1Abc", "expand": ["charge"]}),
            "POST", "/v1/refunds",
            &[("expand[0]", "charge"), ("payment_intent", "pi_1Abc")]),
        row("stripe.getRefund",
            json!({"refundId": "re_1Abc"}),
            "GET", "/v1/refunds/re_1Abc",
            &[]),
        row("stripe.listRefunds",
            json!({"charge": "ch_1Abc", "paymentIntent": "pi_1Abc", "created": {"lt": 1_710_000_000}, "limit": 1}),
            "GET", "/v1/refunds",
            &[("charge", "ch_1Abc"), ("created[lt]", "1710000000"), ("limit", "1"), ("payment_intent", "pi_1Abc")]),
        // --- Disputes -----------------------------------------------------------
        row("stripe.getDispute",
            json!({"disputeId": "dp_1Abc", "expand": ["charge"]}),
            "GET", "/v1/disputes/dp_1Abc",
            &[("expand[0]", "charge")]),
        row("stripe.listDisputes",
            json!({"charge": "ch_1Abc", "paymentIntent": "pi_1Abc", "created": {"gte": 1_700_000_000}, "limit": 10}),
            "GET", "/v1/disputes",
            &[("charge", "ch_1Abc"), ("created[gte]", "1700000000"), ("limit", "10"), ("payment_intent", "pi_1Abc")]),
        row("stripe.updateDispute",
            json!({"disputeId": "dp_1Abc",
                   "evidence": {"customer_name": "Jane Doe", "customer_email_address": "jane@example.com",
                                "product_description": "Pro plan, yearly", "shipping_tracking_number": "1Z999",
                                "receipt": "file_1Abc", "uncategorized_text": "Delivered on time."},
                   "metadata": {"case": "77"}, "submit": false}),
            "POST", "/v1/disputes/dp_1Abc",
            &[
                ("evidence[customer_email_address]", "jane@example.com"),
                ("evidence[customer_name]", "Jane Doe"),
                ("evidence[product_description]", "Pro plan, yearly"),
                ("evidence[receipt]", "file_1Abc"),
                ("evidence[shipping_tracking_number]", "1Z999"),
                ("evidence[uncategorized_text]", "Delivered on time."),
                ("metadata[case]", "77"),
                ("submit", "false"),
            ]),
        row("stripe.closeDispute",
            json!({"disputeId": "du_1Abc"}),
            "POST", "/v1/disputes/du_1Abc/close",
            &[]),
        // --- Payouts ------------------------------------------------------------
        row("stripe.getPayout",
            json!({"payoutId": "po_1Abc", "expand": ["destination"]}),
            "GET", "/v1/payouts/po_1Abc",
            &[("expand[0]", "destination")]),
        row("stripe.listPayouts",
            json!({"status": "paid", "destination": "ba_1Abc",
                   "arrivalDate": {"gte": 1_700_000_000, "lte": 1_710_000_000},
                   "created": {"gt": 1_690_000_000}, "limit": 10}),
            "GET", "/v1/payouts",
            &[
                ("arrival_date[gte]", "1700000000"),
                ("arrival_date[lte]", "1710000000"),
                ("created[gt]", "1690000000"),
                ("destination", "ba_1Abc"),
                ("limit", "10"),
                ("status", "paid"),
            ]),
        row("stripe.createPayout",
            json!({"amount": 5000, "currency": "usd", "description": "Weekly", "destination": "ba_1Abc",
                   "method": "instant", "sourceType": "card", "statementDescriptor": "ACME PAYOUT",
                   "metadata": {"week": "12"}}),
            "POST", "/v1/payouts",
            &[
                ("amount", "5000"),
                ("currency", "usd"),
                ("description", "Weekly"),
                ("destination", "ba_1Abc"),
                ("metadata[week]", "12"),
                ("method", "instant"),
                ("source_type", "card"),
                ("statement_descriptor", "ACME PAYOUT"),
            ]),
        row("stripe.cancelPayout",
            json!({"payoutId": "po_1Abc"}),
            "POST", "/v1/payouts/po_1Abc/cancel",
            &[]),
        // --- Balance ------------------------------------------------------------
        row("stripe.getBalance",
            json!({"stripeAccount": "acct_1Connected"}),
            "GET", "/v1/balance",
            &[])
            .headers(&[("stripe-account", "acct_1Connected")]),
        row("stripe.listBalanceTransactions",
            json!({"type": "payout", "payout": "po_1Abc", "currency": "usd", "source": "ch_1Abc",
                   "created": {"gte": 1_700_000_000, "lt": 1_710_000_000}, "limit": 25}),
            "GET", "/v1/balance_transactions",
            &[
                ("created[gte]", "1700000000"),
                ("created[lt]", "1710000000"),
                ("currency", "usd"),
                ("limit", "25"),
                ("payout", "po_1Abc"),
                ("source", "ch_1Abc"),
                ("type", "payout"),
            ]),
    ]
}

/// A plausible answer for any Stripe path: a list for collections and
/// searches, an object otherwise.
fn answer(request: &Request) -> ResponseTemplate {
    let path = request.url.path();
    let segments = path.trim_start_matches('/').split('/').count();
    let body = if path.ends_with("/search") {
        json!({"object": "search_result", "data": [], "has_more": false, "next_page": null, "url": path})
    } else if request.method.as_str() == "GET" && segments == 2 && path != "/v1/balance" {
        json!({"object": "list", "data": [], "has_more": false, "url": path})
    } else {
        json!({"id": "x", "object": "stub"})
    };
    ResponseTemplate::new(200)
        .insert_header("request-id", "req_catalog")
        .set_body_json(body)
}

fn sorted(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort();
    pairs
}

/// What is wrong with the request Stripe got for `row`, if anything.
fn check(row: &Row, got: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if got.method.as_str() != row.method {
        problems.push(format!("method {} (want {})", got.method, row.method));
    }
    if got.url.path() != row.path {
        problems.push(format!("path {} (want {})", got.url.path(), row.path));
    }
    let query = sorted(got.url.query_pairs().into_owned());
    let form = sorted(form_urlencoded::parse(&got.body).into_owned());
    let (sent, other, other_name) = if row.method == "POST" {
        (form, query, "query")
    } else {
        (query, form, "body")
    };
    let want = sorted(
        row.pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    if sent != want {
        let missing: Vec<_> = want.iter().filter(|p| !sent.contains(p)).collect();
        let extra: Vec<_> = sent.iter().filter(|p| !want.contains(p)).collect();
        problems.push(format!(
            "pairs differ: missing {missing:?}, unexpected {extra:?}"
        ));
    }
    if !other.is_empty() {
        problems.push(format!("unexpected {other_name} pairs {other:?}"));
    }
    if row.method == "POST"
        && !row.pairs.is_empty()
        && got
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            != Some("application/x-www-form-urlencoded")
    {
        problems.push(format!(
            "content-type {:?}",
            got.headers.get("content-type")
        ));
    }
    if row.method != "POST" && got.headers.contains_key("idempotency-key") {
        problems.push("an Idempotency-Key on a GET or DELETE".into());
    }
    for (name, value) in row.headers {
        let actual = got.headers.get(*name).and_then(|v| v.to_str().ok());
        if actual != Some(*value) {
            problems.push(format!("header {name}: {actual:?} (want {value:?})"));
        }
    }
    problems
}

#[tokio::test]
async fn every_action_sends_stripes_exact_encoding() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["connections:write", "proxy"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let conn = app
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": SK}),
        )
        .await;
    assert_eq!(conn.status, 201, "{}", conn.text);
    let conn = conn.id();
    Mock::given(any())
        .respond_with(answer)
        .mount(&app.stripe)
        .await;

    let mut failures = Vec::new();
    for row in rows() {
        let before = app.stripe.received_requests().await.unwrap().len();
        let reply = app
            .post(
                &format!("/api/v1/connections/{conn}/actions"),
                &token,
                json!({"action": row.action, "config": row.config}),
            )
            .await;
        let sent = app.stripe.received_requests().await.unwrap();
        let new: Vec<&Request> = sent[before..]
            .iter()
            .filter(|r| r.url.path() != "/v1/account")
            .collect();
        let mut problems = Vec::new();
        if reply.status != 200 {
            problems.push(format!("answered {}: {}", reply.status, reply.text));
        }
        match new.as_slice() {
            [one] => problems.extend(check(&row, one)),
            many => problems.push(format!("{} requests reached Stripe (want 1)", many.len())),
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} {}:\n    {}",
                row.action,
                row.config,
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_catalogue_action_has_a_row() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["connections:read"]).await;
    let list = app.get("/api/v1/actions", &token).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let served: BTreeSet<String> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    let table: BTreeSet<String> = rows().iter().map(|r| r.action.to_owned()).collect();
    let untested: Vec<_> = served.difference(&table).collect();
    let unknown: Vec<_> = table.difference(&served).collect();
    assert!(
        untested.is_empty() && unknown.is_empty(),
        "actions without a row: {untested:?}; rows for actions the catalogue lacks: {unknown:?}"
    );
    // Each row's method and path template agree with the served catalogue.
    for row in rows() {
        let def = list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == row.action)
            .unwrap();
        assert_eq!(def["method"], row.method, "{}", row.action);
        let template = def["path"].as_str().unwrap();
        let pattern: Vec<&str> = template.split('/').collect();
        let actual: Vec<&str> = row.path.split('/').collect();
        assert_eq!(
            pattern.len(),
            actual.len(),
            "{}: {template} vs {}",
            row.action,
            row.path
        );
        for (p, a) in pattern.iter().zip(&actual) {
            assert!(
                p == a || (p.starts_with('{') && p.ends_with('}')),
                "{}: {template} vs {}",
                row.action,
                row.path
            );
        }
    }
}
