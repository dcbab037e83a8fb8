"""Listing machines like Kubernetes lists objects: a label selector, and pages of `limit`
items continued with an opaque `continue` token.

Selector terms, comma-separated, all of which must hold: `k=v` (or `k==v`), `k!=v` (the label
is absent or differs), `k` (the label is set), `!k` (it is not). The token is the id of the
last item of the previous page: items are in id order, so a page continues where the last one
stopped even when machines come and go in between.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from mayu_py.errors import BadRequest
from mayu_py.model import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, LabelTerm

T = TypeVar("T")
_KEY = LABEL_KEY_PATTERN.strip("^$")
_VALUE = LABEL_VALUE_PATTERN.strip("^$")
_TERM = re.compile(rf"(?P<neg>!)?(?P<key>{_KEY})(?:(?P<op>==|!=|=)(?P<value>{_VALUE}))?")


def parse_selector(text: str | None) -> list[LabelTerm]:
    """The terms of a label selector; BadRequest naming the first term that is not one."""
    terms: list[LabelTerm] = []
    for raw in (text or "").split(","):
        part = raw.strip()
        if not part:
            continue
        match = _TERM.fullmatch(part)
        if match is None or (match["neg"] and match["op"]):
            raise BadRequest(
                "invalid label selector (k=v, k!=v, k or !k, comma-separated)",
                {"selector": part[:128]},
            )
        if match["op"] is None:
            terms.append(LabelTerm(match["key"], "!exists" if match["neg"] else "exists"))
        else:
            op = "!=" if match["op"] == "!=" else "="
            terms.append(LabelTerm(match["key"], op, match["value"]))
    return terms


def encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The id a `continue` token resumes after; BadRequest for one we did not make."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("invalid continue token", {"continue": token[:64]}) from None
    if not text or not text.isprintable():
        raise BadRequest("invalid continue token", {"continue": token[:64]})
    return text


def page(
    items: Sequence[T], key: Callable[[T], str], limit: int | None, after: str | None
) -> tuple[list[T], str | None]:
    """Up to `limit` of `items` (sorted by `key`) after the id `after`, and the token of the
    next page (None on the last page)."""
    rest = [item for item in items if after is None or key(item) > after]
    if limit is None or len(rest) <= limit:
        return rest, None
    shown = rest[:limit]
    return shown, encode_token(key(shown[-1]))
