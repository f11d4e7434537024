"""Stripe's OpenAPI description as a contract for this server: answers validated against its schemas, and
every param a route accepts looked up in its description of that operation.

``spec3.json`` (Stripe's ``openapi/spec3.yaml``, MIT, as JSON) is 2.6 MB; ``spec3_subset.json`` beside this
file keeps what the contract needs (the operations on the paths in ``routes.ROUTES`` and every schema they
reach, descriptions dropped). Regenerate it after adding a route:

    python -m devtools.stripe_server.spec /path/to/spec3.json

OpenAPI 3.0 is turned into JSON Schema (2020-12): ``$ref`` into ``$defs``, ``nullable`` into ``anyOf`` with
null. Objects are closed (``additionalProperties: false`` where the spec lists properties and says nothing
else), so a field Stripe does not have fails, except the few fields Stripe's canonical examples carry that
are newer than the description (``NEWER_THAN_SPEC``; a test proves each one is needed).
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema_rs

from devtools.stripe_server.params import split_path
from devtools.stripe_server.routes import ROUTES, Route

SUBSET_PATH = Path(__file__).with_name("spec3_subset.json")
FORM = "application/x-www-form-urlencoded"
DROPPED = {"description", "summary", "title", "x-stripeResource", "x-stripeOperations", "x-resourceId"}

# Fields of Stripe's canonical examples (fixtures3.json, 2026) that spec3.json (API version 2023-08-16) does not
# describe, or describes with another type: by schema, accepted with any value.
NEWER_THAN_SPEC: dict[str, set[str]] = {
    "account_bacs_debit_payments_settings": {"display_name", "service_user_number"},
    "account_business_profile": {"annual_revenue", "estimated_worker_count", "minority_owned_business_designation"},
    "account_settings": {"invoices"},
    "balance_transaction": {"balance_type"},
    "billing_details": {"tax_id"},
    "charge": {"source"},
    "charge_outcome": {"advice_code", "network_advice_code", "network_decline_code"},
    "payment_intent": {
        "customer_account",
        "excluded_payment_method_types",
        "managed_payments",
        "payment_method_configuration_details",
        "source",
    },
    "payment_method_details_card": {
        "amount_authorized",
        "authorization_code",
        "extended_authorization",
        "incremental_authorization",
        "multicapture",
        "network_transaction_id",
        "overcapture",
        "regulated_status",
        "transaction_link_id",
    },
    "payout": {"application_fee", "application_fee_amount", "payout_method", "trace_id"},
    "refund": {"customer", "customer_account", "destination_details", "payment_method"},
    "three_d_secure_details_charge": {"electronic_commerce_indicator", "exemption_indicator", "transaction_id"},
}


def subset(full: dict[str, Any], routes: list[Route] = ROUTES) -> dict[str, Any]:
    """The operations of ``routes`` and every component schema they reach, without descriptions."""
    paths = {route.path: full["paths"][route.path] for route in routes if route.path in full["paths"]}
    schemas = full["components"]["schemas"]
    reached: set[str] = set()
    todo = _refs(paths)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo |= _refs(schemas[name])
    kept = {"paths": paths, "components": {"schemas": {n: schemas[n] for n in sorted(reached)}}}
    return {"info": full.get("info", {}), **_strip(kept)}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in DROPPED or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def to_json_schema(node: Any, allowances: dict[str, set[str]], name: str | None = None) -> Any:
    """One OpenAPI 3.0 schema as closed JSON Schema; ``name`` is the component's, for ``allowances``."""
    if isinstance(node, list):
        return [to_json_schema(n, allowances) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key == "nullable" or (key in DROPPED and isinstance(value, str)):
            continue
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/$defs/")
        elif key == "properties":
            out[key] = {p: to_json_schema(s, allowances) for p, s in value.items()}
        else:
            out[key] = to_json_schema(value, allowances)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    for field in allowances.get(name or "", set()):
        out.setdefault("properties", {})[field] = {}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class Contract:
    def __init__(self, spec: dict[str, Any], allowances: dict[str, set[str]] = NEWER_THAN_SPEC) -> None:
        self.spec = spec
        self.allowances = allowances

    @classmethod
    def load(cls, path: Path = SUBSET_PATH, **kwargs: Any) -> Contract:
        return cls(json.loads(path.read_text()), **kwargs)

    @cached_property
    def defs(self) -> dict[str, Any]:
        schemas = self.spec["components"]["schemas"]
        return {name: to_json_schema(schema, self.allowances, name) for name, schema in schemas.items()}

    # answers

    def operation(self, method: str, path: str) -> dict[str, Any]:
        return dict(self.spec["paths"][path][method.lower()])

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        """What Stripe documents for this answer: the 200 schema, or the error schema for the rest."""
        responses = self.operation(method, path)["responses"]
        response = responses["200" if status == 200 else "default"]
        return dict(response["content"]["application/json"]["schema"])

    def problems(self, schema: dict[str, Any], instance: Any) -> list[str]:
        """Every way ``instance`` departs from ``schema`` (OpenAPI), as ``where: what``; [] when it conforms.

        Where a value fails every branch of an ``anyOf`` (nullable or expandable fields), the branch that
        comes closest says why, instead of the validator's "not valid under any of the schemas"."""
        converted = to_json_schema(schema, self.allowances)
        return self._explain(converted, instance, ())

    def component_problems(self, name: str, instance: Any) -> list[str]:
        return self.problems({"$ref": f"#/components/schemas/{name}"}, instance)

    def _explain(self, schema: dict[str, Any], instance: Any, where: tuple[Any, ...]) -> list[str]:
        document = {**schema, "$defs": self.defs}
        found: list[str] = []
        for error in jsonschema_rs.Draft202012Validator(document).iter_errors(instance):
            at = (*where, *error.instance_path)
            if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.AnyOf):
                branches = self._at(document, list(error.schema_path))
                value = _get(instance, list(error.instance_path))
                closest = min(
                    (self._explain(b, value, at) for b in branches if b != {"type": "null"}),
                    key=len,
                    default=[],
                )
                found += closest or [f"{_where(at)}: {error.message[:300]}"]
            else:
                found.append(f"{_where(at)}: {error.message[:300]}")
        return found

    def _at(self, document: dict[str, Any], schema_path: list[Any]) -> Any:
        node: Any = document
        for step in schema_path:
            while isinstance(node, dict) and step not in node and "$ref" in node:
                node = self.defs[node["$ref"].rsplit("/", 1)[1]]
            node = node[step]
        return node

    # params

    def accepted_params(self, method: str, path: str) -> dict[str, Any]:
        """Every param Stripe documents for an operation: query params of a GET, form fields of a POST."""
        operation = self.operation(method, path)
        if method == "GET":
            return {p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "query"}
        body = operation.get("requestBody", {}).get("content", {}).get(FORM, {}).get("schema", {})
        return dict(body.get("properties", {}))

    def route_problems(self, route: Route) -> list[str]:
        """Why this route is not Stripe's: an unknown path or method, or a param Stripe does not accept."""
        where = f"{route.method} {route.path}"
        if route.path not in self.spec["paths"]:
            return [f"{where}: no such path in Stripe's description"]
        if route.method.lower() not in self.spec["paths"][route.path]:
            return [f"{where}: Stripe has no {route.method} on this path"]
        documented = self.accepted_params(route.method, route.path)
        problems = []
        for declared in route.params:
            head, *rest = split_path(declared)
            if head not in documented or not self._allows(documented[head], rest):
                problems.append(f"{where}: Stripe does not accept the param {declared}")
        return problems

    def _allows(self, schema: Any, rest: list[str]) -> bool:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self.spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        if not isinstance(schema, dict):
            return False
        if "anyOf" in schema:
            return any(self._allows(branch, rest) for branch in schema["anyOf"])
        if not rest:  # a plain value: string, integer, boolean, or one of an enum
            return schema.get("type") not in {"object", "array"}
        if schema.get("type") != "object":
            return False
        step, properties = rest[0], schema.get("properties", {})
        if step != "*" and step in properties:
            return self._allows(properties[step], rest[1:])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return self._allows(extra, rest[1:])
        return step == "*" and extra is True


def _get(instance: Any, path: list[Any]) -> Any:
    for step in path:
        instance = instance[step]
    return instance


def _where(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path) or "(the object)"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m devtools.stripe_server.spec /path/to/spec3.json")
    kept = subset(json.loads(Path(argv[0]).read_text()))
    SUBSET_PATH.write_text(json.dumps(kept, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{SUBSET_PATH}: {len(kept['paths'])} paths, {len(kept['components']['schemas'])} schemas")


if __name__ == "__main__":
    main(sys.argv[1:])
