"""Request inputs checked against their declarations: query and path parameters coerced and
validated, JSON bodies parsed strictly and validated (``E-BAD-INPUT`` on anything wrong)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from api.http.declare import Route
from api.http.openapi import for_validation
from ledger.canonical import integral_number, loads_json_strict
from ledger.errors import BadInput

__all__ = ["RouteInputs"]

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _first_error(validator: Draft202012Validator, value: Any, what: str) -> None:
    err: ValidationError | None = next(iter(validator.iter_errors(value)), None)
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path)
        # A "not" failure's own message just repeats the schema; its description says why.
        why = err.message
        if err.validator == "not" and isinstance(err.schema, dict) and "description" in err.schema:
            why = f"{err.instance!r}: {err.schema['description']}"
        raise BadInput("E-BAD-INPUT", f"{what}{'/' + where if where else ''}: {why}")


def _coerce(name: str, raw: str, schema: Mapping[str, Any]) -> Any:
    t = schema.get("type")
    if t == "integer":
        value = integral_number(raw)
        if value is None:
            raise BadInput("E-BAD-INPUT", f"parameter {name!r} must be an integer")
        return value
    if t == "boolean":
        low = raw.lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise BadInput("E-BAD-INPUT", f"parameter {name!r} must be true or false")
    return raw


def _router_checks(where: str, schema: Mapping[str, Any]) -> bool:
    """Whether the router already enforces all of ``schema``: a path parameter that is a
    string with an anchored pattern only matches that pattern (``app.router_path``), so
    validating it again would cost every request a jsonschema run for nothing."""
    pattern = schema.get("pattern", "")
    return (
        where == "path"
        and schema.get("type") == "string"
        and set(schema) <= {"type", "pattern", "description"}
        and pattern.startswith("^")
        and pattern.endswith("$")
    )


@dataclass(slots=True)
class RouteInputs:
    """The compiled validators of one route."""

    route: Route
    params: tuple[tuple[str, str, dict[str, Any], Draft202012Validator | None, bool], ...]
    body: Draft202012Validator | None

    @classmethod
    def compile(cls, route: Route) -> RouteInputs:
        params = tuple(
            (
                p.name,
                p.where,
                dict(p.schema),
                None
                if _router_checks(p.where, p.schema)
                else Draft202012Validator(for_validation(p.schema)),
                p.required,
            )
            for p in route.params
            if p.where in ("query", "path")
        )
        body = None
        if route.body is not None and route.body.media == "application/json":
            body = Draft202012Validator(for_validation(route.body.schema))
        return cls(route, params, body)

    def query(self, request: web.Request) -> dict[str, Any]:
        """Declared query and path parameters, typed; defaults filled in."""
        out: dict[str, Any] = {}
        for name, where, schema, validator, required in self.params:
            if where == "path":
                value: Any = request.match_info[name]
            elif schema.get("type") == "array":
                raw = request.query.getall(name, [])
                if not raw:
                    continue
                value = [_coerce(name, v, schema.get("items", {})) for v in raw]
            else:
                if name not in request.query:
                    if required:
                        raise BadInput("E-BAD-INPUT", f"query parameter {name!r} is required")
                    if "default" in schema:
                        out[name] = schema["default"]
                    continue
                value = _coerce(name, request.query[name], schema)
            if validator is not None:
                _first_error(validator, value, f"parameter {name!r}")
            out[name] = value
        return out

    async def json(self, request: web.Request) -> dict[str, Any]:
        """The JSON body, parsed strictly (no floats, no duplicate keys) and validated."""
        assert self.body is not None and self.route.body is not None
        raw = await request.read()
        if not raw.strip():
            if self.route.body.required:
                raise BadInput("E-BAD-INPUT", "request body must be a JSON document")
            doc: Any = {}
        else:
            doc = loads_json_strict(raw, what="request body", integral_floats=True)
        _first_error(self.body, doc, "request body")
        return dict(doc)
