"""Hostile values for property-based tests (hypothesis strategies), and a snapshot of the
store's tables to prove that a refused request changed nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# Values that broke or could break parsers, patterns, paths and templates.
NASTY_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "node-1\n",
    "acme\n",
    "\r\n",
    "\t",
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "/etc/shadow",
    "%00",
    "%2e%2e",
    "\u202e",
    "\ufeff",
    "\U0001f4a5",
    "ä",
    "null",
    "true",
    "NaN",
    "Infinity",
    "-1",
    "0",
    "1e309",
    "9" * 5000,
    "{{ 7*7 }}",
    "${IFS}",
    "' OR 1=1 --",
    "<script>",
    "x" * 70_000,
    "52-54-00-00-00-01",
    "52:54:00:00:00:01\n",
    "ff-ff-ff-ff-ff-ff",
    "controller",
    "worker",
    "running",
    "deleted",
    "Bearer ",
)


def hostile_text() -> st.SearchStrategy[str]:
    """Unicode, control characters, huge strings and the known-nasty ones."""
    return st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=40),
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40),
        st.text(min_size=300, max_size=2000),
    )


def hostile_json() -> st.SearchStrategy[Any]:
    """Any JSON value (of any type, nested a little), with NaN, Infinity and huge numbers."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**400, 1.5, -0.0]),
        st.floats(allow_nan=True, allow_infinity=True),
        hostile_text(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(hostile_text(), inner, max_size=4)
        ),
        max_leaves=8,
    )


def deep(depth: int) -> str:
    """JSON text nested `depth` levels deep."""
    return '{"a":' * depth + "1" + "}" * depth


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Bodies that are not (standard) JSON: binary, bad UTF-8, constants, deep nesting."""
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                b"",
                b"\xff\xfe",
                b"NaN",
                b"Infinity",
                b"-Infinity",
                b'{"a": NaN}',
                b"[" * 100_000,
                deep(40).encode(),
                ("[" * 2000 + "]" * 2000).encode(),
                b"{nope",
                b"1e99999",
                b'"\\ud800"',
            ]
        ),
    )


REMOVE = object()  # in place of a value: leave the field out


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON document (keys and list indexes), the empty path included."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += paths(value, (*prefix, index))
    return found


def _copy(doc: Any) -> Any:
    return json.loads(json.dumps(doc))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = _copy(doc)
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


def removed(doc: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return None
    copy = _copy(doc)
    target = copy
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return copy


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """A valid document with one field (or the whole) replaced by a hostile value, removed,
    or joined by an unknown key."""
    path = draw(st.sampled_from(paths(doc)))
    how = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if how == "remove":
        return removed(doc, path)
    if how == "add":
        target = _copy(doc)
        holder = target
        for part in path:
            holder = holder[part]
        if isinstance(holder, dict):
            holder[draw(hostile_text())] = draw(hostile_json())
            return target
    return replaced(doc, path, draw(hostile_json()))


class StoreCopy:
    """A copy of a SQLite store, put back with SQLite's backup API (the live file stays open
    in the app, which sees the restored content at its next transaction)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._copy = sqlite3.connect(":memory:")
        source = sqlite3.connect(db)
        try:
            source.backup(self._copy)
        finally:
            source.close()

    def restore(self) -> None:
        live = sqlite3.connect(self.db)
        try:
            self._copy.backup(live)
        finally:
            live.close()

    def close(self) -> None:
        self._copy.close()


TABLES = ("machines", "events", "alerts", "pending_configs", "tenants", "hosts")
# Refusals leave an audit record: the operator sees who tried what. Nothing else may change.
AUDIT_KINDS = frozenset(
    {"ignition-refused", "report-refused", "transition-refused", "approval-refused", "denied"}
)


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the store's tables (read with a connection of its own)."""
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    finally:
        conn.close()


def changes(
    before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]
) -> dict[str, Any]:
    """What differs between two snapshots, audit records of refusals left out."""
    found: dict[str, Any] = {}
    for table in TABLES:
        gone = [r for r in before[table] if r not in after[table]]
        new = [r for r in after[table] if r not in before[table]]
        if table in ("events", "alerts"):
            new = [r for r in new if r[3] not in AUDIT_KINDS]  # column 3: kind
        if gone or new:
            found[table] = {"gone": gone, "new": new}
    return found
