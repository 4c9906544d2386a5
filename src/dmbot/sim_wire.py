"""Requests and answers as the simulator's handlers see them.

A query string is parsed to lists of values and read as Rails reads scalar params (the last
value wins, `to_i` for numbers); an answer is a `Response`, or an `ApiError` raised on the way.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

Query = dict[str, list[str]]


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def json_response(status: int, data: object, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(
        status,
        body,
        {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "private, no-store",
            "Vary": "Authorization, Origin",
            "X-Request-Id": str(uuid.uuid4()),
            **(headers or {}),
        },
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


def to_i(text: str) -> int:
    """Ruby's `String#to_i`: the leading integer, or 0."""
    digits = text.strip()
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    end = next((i for i, c in enumerate(digits) if not c.isdigit()), len(digits))
    return sign * int(digits[:end] or "0")


def last(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def bound(query: Query, name: str) -> int | None:
    """A cursor parameter as a SQL bound: absent or blank means no bound."""
    value = last(query, name)
    return to_i(value) if value else None


def limit_param(query: Query, default: int) -> int:
    value = last(query, "limit")
    return default if value is None else min(abs(to_i(value)), 2 * default)
