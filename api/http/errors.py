"""Every failure as the contract's ``{"error": {"code", "message"}}`` with a fitting status."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api.http.state import REQUEST_ID
from ledger.errors import CapError
from ledger.logs import get_logger

__all__ = ["error_middleware", "error_response"]

_log = get_logger("cap.http")
# aiohttp's own refusals (no route, wrong method, body too large...) and their codes.
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cap-ledger"'}
_HTTP_CODES = {404: "E-NOT-FOUND", 401: "E-UNAUTHORIZED", 403: "E-FORBIDDEN", 409: "E-CONFLICT"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: Any
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return web.json_response({"error": body}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except CapError as exc:
        headers = _CHALLENGE if exc.http_status == 401 else None
        return error_response(exc.http_status, exc.code, exc.message, headers, **exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After", "Content-Range")
        }
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(
            exc.status, _HTTP_CODES.get(exc.status, "E-BAD-INPUT"), message, headers
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        _log.exception("http.unhandled", request_id=request.get(REQUEST_ID))
        return error_response(
            500,
            "E-INTERNAL",
            f"internal error (request id {request.get(REQUEST_ID, '-')}); see the service log",
        )
