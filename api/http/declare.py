"""Route declarations that carry their own schemas: the router, the request validation and
``/openapi.json`` are all built from the same :class:`Route` objects, so the published
document cannot drift from what the handlers accept and return.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "Body",
    "Handler",
    "Named",
    "Param",
    "Reply",
    "Route",
    "RouteGroup",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True, frozen=True)
class Named:
    """A schema published once under ``components/schemas/<name>`` and referenced elsewhere."""

    name: str
    schema: Mapping[str, Any]


@dataclass(slots=True, frozen=True)
class Param:
    """A query, path or header parameter; query values are coerced to ``schema``'s type."""

    name: str
    where: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False


@dataclass(slots=True, frozen=True)
class Body:
    """The request body: its media type and schema (JSON bodies are validated against it)."""

    media: str
    schema: Mapping[str, Any] | Named
    description: str = ""
    required: bool = True


@dataclass(slots=True, frozen=True)
class Reply:
    """One documented response (``media=""``: no body)."""

    status: int
    description: str
    schema: Mapping[str, Any] | Named | None = None
    media: str = "application/json"
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Route:
    """One operation: method, path template, the role it needs (None: open) and its schemas."""

    method: str
    path: str
    handler: Handler
    summary: str
    role: str | None
    tag: str
    params: tuple[Param, ...] = ()
    body: Body | None = None
    replies: tuple[Reply, ...] = ()

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


class RouteGroup:
    """The routes of one module, declared with a decorator next to their handlers."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        role: str | None,
        params: Sequence[Param] = (),
        body: Body | None = None,
        replies: Sequence[Reply] = (),
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(
                Route(
                    method.upper(),
                    path,
                    fn,
                    summary,
                    role,
                    self.tag,
                    tuple(params),
                    body,
                    tuple(replies),
                )
            )
            return fn

        return deco
