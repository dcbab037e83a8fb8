"""Assembly of an Ignition 3.3.0 config from a template's YAML output and generated files.

Templates write YAML that maps 1:1 onto the spec, with two conveniences resolved here:
`contents: {inline: "text"}` (and the same in `append` entries) becomes a base64 `data:` URL,
and a top-level `x-mayu` mapping carries instructions to the renderer (removed from the output):
`static_manifests: true` (the node's static pod manifests as files) and `install_target:
{template, path}` (an installer's config: the named template's whole config for the same node,
as the JSON file `path`, for the OS installer to write to disk).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import yaml

from mayu_py.errors import RenderError
from mayu_py.model import FileSpec

SPEC_VERSION = "3.3.0"
SPEC_TOP_LEVEL = frozenset({"ignition", "kernelArguments", "passwd", "storage", "systemd"})
EXTENSION_KEY = "x-mayu"
# libyaml's safe loader when present: 10x faster than the pure-Python one on the hot path.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
EXTENSION_OPTIONS = frozenset({"static_manifests", "install_target"})


def parse_output(name: str, text: str) -> dict[str, Any]:
    """Parse a template's rendered text as one YAML mapping; RenderError names the line."""
    try:
        document = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is None:
            raise RenderError(f"template {name}: output is not valid YAML") from None
        lines = text.splitlines()
        source = lines[mark.line].strip() if mark.line < len(lines) else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RenderError(
            f"template {name}: rendered output line {mark.line + 1} is not valid YAML "
            f"({problem}): {source[:120]!r}",
            {"template": name, "output_line": mark.line + 1},
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise RenderError(
            f"template {name}: output must be a YAML mapping, not a {_kind(document)}"
        )
    return document


DATA_URL_PREFIX = "data:;base64,"


def data_url(text: str) -> str:
    """A base64 `data:` URL (media type omitted) that Ignition 2.14 decodes byte for byte."""
    return DATA_URL_PREFIX + base64.b64encode(text.encode()).decode("ascii")


def file_text(config: dict[str, Any], path: str) -> str | None:
    """The text of `path` in an assembled config when it is inline (a `data_url`), else None."""
    for entry in config.get("storage", {}).get("files", []):
        source = (entry.get("contents") or {}).get("source", "")
        if entry.get("path") == path and source.startswith(DATA_URL_PREFIX):
            return base64.b64decode(source.removeprefix(DATA_URL_PREFIX)).decode()
    return None


def file_entry(spec: FileSpec) -> dict[str, Any]:
    """The storage.files entry for a FileSpec: decimal mode, overwrite, inline data URL."""
    return {
        "path": spec.path,
        "mode": spec.mode,
        "overwrite": True,
        "contents": {"source": data_url(spec.contents)},
    }


def take_extensions(name: str, document: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the `x-mayu` instructions after checking their names."""
    options = document.pop(EXTENSION_KEY, None) or {}
    if not isinstance(options, dict):
        raise RenderError(f"template {name}: {EXTENSION_KEY} must be a mapping")
    unknown = sorted(set(options) - EXTENSION_OPTIONS)
    if unknown:
        raise RenderError(f"template {name}: unknown {EXTENSION_KEY} option(s) {unknown}")
    return options


def assemble(name: str, document: dict[str, Any], files: Iterable[FileSpec]) -> dict[str, Any]:
    """Finish a parsed template output into a spec 3.3.0 config with `files` appended."""
    unknown = sorted(set(document) - SPEC_TOP_LEVEL)
    if unknown:
        raise RenderError(f"template {name}: unknown top-level key(s) {unknown}")
    ignition = document.setdefault("ignition", {})
    if not isinstance(ignition, dict):
        raise RenderError(f"template {name}: ignition must be a mapping")
    version = ignition.setdefault("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise RenderError(
            f"template {name}: ignition.version must be {SPEC_VERSION}, not {version}"
        )
    storage = document.setdefault("storage", {})
    entries = storage.setdefault("files", [])
    if not isinstance(entries, list):
        raise RenderError(f"template {name}: storage.files must be a list")
    for entry in entries:
        _resolve_inline(name, entry)
    entries.extend(file_entry(spec) for spec in files)
    _refuse_duplicates(name, entries)
    return {"ignition": document.pop("ignition"), **document}


def _resolve_inline(name: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise RenderError(f"template {name}: every storage.files entry must be a mapping")
    path = entry.get("path", "?")
    mode = entry.get("mode")
    if mode is not None and (not isinstance(mode, int) or isinstance(mode, bool)):
        raise RenderError(f"template {name}: {path}: mode must be an integer such as 0644")
    for contents in [entry.get("contents"), *entry.get("append", [])]:
        if not isinstance(contents, dict) or "inline" not in contents:
            continue
        if "source" in contents:
            raise RenderError(f"template {name}: {path}: contents has both inline and source")
        text = contents.pop("inline")
        if not isinstance(text, str):
            raise RenderError(f"template {name}: {path}: contents.inline must be a string")
        contents["source"] = data_url(text)


def _refuse_duplicates(name: str, entries: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for entry in entries:
        path = entry.get("path")
        if path in seen:
            raise RenderError(f"template {name}: file {path} is written twice")
        seen.add(path)


def _kind(value: Any) -> str:
    return {list: "list", str: "string"}.get(type(value), type(value).__name__)
