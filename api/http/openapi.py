"""``/openapi.json``: an OpenAPI 3.1 document generated from the route declarations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from api.http.declare import Named, Reply, Route
from api.http.schemas import ERROR

__all__ = ["build_openapi", "for_validation"]

_STATUS_TEXT = {
    400: "bad input (E-BAD-INPUT): malformed parameter, JSON, multipart or cursor; "
    "a request line or header too long for the HTTP parser gets a plain-text 400",
    401: "missing, unknown or revoked bearer token (E-UNAUTHORIZED)",
    403: "the token's role is too low (E-FORBIDDEN)",
    404: "no such thing (E-NOT-FOUND, E-BLOB-MISSING)",
    413: "request body larger than the service's limit",
}


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, schema: Mapping[str, Any] | Named) -> dict[str, Any]:
        """``schema`` with every named part moved to components and referenced."""
        if isinstance(schema, Named):
            if schema.name not in self.schemas:
                self.schemas[schema.name] = {}  # reserve first: schemas may nest
                self.schemas[schema.name] = self.ref(schema.schema)
            return {"$ref": f"#/components/schemas/{schema.name}"}
        out: dict[str, Any] = {}
        for k, v in schema.items():
            if isinstance(v, Named | Mapping):
                out[k] = self.ref(v)
            elif isinstance(v, list):
                out[k] = [self.ref(x) if isinstance(x, Named | Mapping) else x for x in v]
            else:
                out[k] = v
        return out


def for_validation(schema: Mapping[str, Any] | Named) -> dict[str, Any]:
    """A self-contained JSON Schema for validating against ``schema``: named parts stay
    ``$ref``s (so recursive schemas work) and resolve into an embedded ``components``."""
    comp = _Components()
    root = comp.ref(schema)
    if comp.schemas:
        root = {**root, "components": {"schemas": comp.schemas}}
    return root


def _reply(comp: _Components, reply: Reply) -> dict[str, Any]:
    if reply.schema is None and reply.status >= 400:
        reply = Reply(reply.status, reply.description, ERROR)
    doc: dict[str, Any] = {"description": reply.description}
    if reply.media and (reply.schema is not None or reply.media != "application/json"):
        body: dict[str, Any] = {}
        if reply.schema is not None:
            body["schema"] = comp.ref(reply.schema)
        doc["content"] = {reply.media: body}
    if reply.headers:
        doc["headers"] = {k: dict(v) for k, v in reply.headers.items()}
    return doc


def _standard_errors(route: Route) -> list[int]:
    """Failures every route of this shape can answer with, whatever its handler does."""
    codes = []
    if route.params or route.body is not None:
        codes.append(400)
    if route.role is not None:
        codes.append(401)
        if route.role != "reader":
            codes.append(403)
    if any(p.where == "path" for p in route.params):
        codes.append(404)
    if route.body is not None:
        codes.append(413)
    return codes


def _operation(comp: _Components, route: Route) -> dict[str, Any]:
    desc = route.handler.__doc__ or route.summary
    if route.role is not None:
        desc += f"\n\nNeeds a token with role `{route.role}` or higher."
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": desc,
        "tags": [route.tag],
        "security": [{"bearer": []}] if route.role is not None else [],
    }
    if route.params:
        op["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "description": p.description,
                "schema": comp.ref(p.schema),
                **({"style": "form", "explode": True} if p.schema.get("type") == "array" else {}),
            }
            for p in route.params
        ]
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body.required,
            "description": route.body.description,
            "content": {route.body.media: {"schema": comp.ref(route.body.schema)}},
        }
    responses: dict[str, Any] = {str(r.status): _reply(comp, r) for r in route.replies}
    for code in _standard_errors(route):
        responses.setdefault(str(code), _reply(comp, Reply(code, _STATUS_TEXT[code], ERROR)))
    if "400" in responses:
        # The HTTP parser refuses an over-long request line or header before any handler
        # runs, and answers in plain text.
        responses["400"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    responses["default"] = _reply(comp, Reply(500, "any other failure, same error shape", ERROR))
    op["responses"] = responses
    return op


def build_openapi(routes: Iterable[Route], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    comp = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(comp, route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "CAP Ledger HTTP service. Errors are "
            '`{"error": {"code": "E-...", "message": "..."}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": comp.schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
