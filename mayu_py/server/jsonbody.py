"""Reading a JSON request body safely: size, nesting depth and non-standard numbers are
refused with 400 before any handler sees the data."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from mayu_py.errors import BadRequest


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in JSON text (brackets inside strings skipped)."""
    depth = deepest = 0
    for char in _BRACKET.findall(_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(text: str, max_depth: int) -> Any:
    """Parse JSON text; BadRequest for bad syntax, NaN/Infinity or nesting beyond max_depth."""
    if nesting_depth(text) > max_depth:
        raise BadRequest("JSON nested too deeply", {"max_depth": max_depth})
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("body is not valid JSON", {"error": str(exc)[:200]}) from None


def json_body(max_depth: int) -> Any:
    """The request's JSON body (None when empty); BadRequest when it is not JSON."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    return parse_json(text, max_depth)
