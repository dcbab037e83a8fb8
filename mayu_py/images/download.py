"""Resumable download of one URL (http, https or file) into a partial file.

An existing partial file is resumed: over HTTP with `Range: bytes=<size>-`, trusting the bytes
only when the server answers 206 with a matching Content-Range (a 200 restarts from zero).
A transfer that stops early raises DownloadInterrupted and keeps the partial for the next run;
the caller verifies the finished file and decides whether it stays.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from rich.progress import Progress, TaskID

from mayu_py.images.errors import DownloadInterrupted, ImageFetchError

log = logging.getLogger(__name__)

CHUNK = 1 << 16
TIMEOUT = (15.0, 60.0)  # connect, read (seconds between bytes)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Meter:
    """Progress reporting for one file; a no-op without a rich Progress."""

    def __init__(self, progress: Progress | None, label: str) -> None:
        self._progress = progress
        self._task: TaskID | None = progress.add_task(label, total=None) if progress else None

    def start(self, total: int | None, completed: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total, completed=completed)

    def advance(self, amount: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)


def fetch_small(url: str, *, limit: int = 16 << 20) -> bytes:
    """A small document (signature, DIGESTS, meta.json) read whole into memory."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        try:
            return Path(unquote(parts.path)).read_bytes()[: limit + 1]
        except OSError as exc:
            raise ImageFetchError(f"{url}: {exc.strerror}") from exc
    try:
        resp = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ImageFetchError(f"{url}: {exc.__class__.__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise ImageFetchError(f"{url}: HTTP {resp.status_code}")
    if len(resp.content) > limit:
        raise ImageFetchError(f"{url}: larger than {limit} bytes")
    return resp.content


def download(url: str, partial: Path, *, progress: Progress | None = None) -> int:
    """Complete `partial` from `url` (resuming what it holds); return its final size."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    meter = _Meter(progress, partial.name.removesuffix(".part"))
    if urlsplit(url).scheme == "file":
        return _download_file(url, partial, meter)
    return _download_http(url, partial, meter)


def _download_file(url: str, partial: Path, meter: _Meter) -> int:
    source = Path(unquote(urlsplit(url).path))
    try:
        size = source.stat().st_size
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > size:
            offset = 0
        meter.start(size, offset)
        with source.open("rb") as src, partial.open("r+b" if offset else "wb") as dst:
            src.seek(offset)
            dst.seek(offset)
            dst.truncate()
            while chunk := src.read(CHUNK):
                dst.write(chunk)
                meter.advance(len(chunk))
    except OSError as exc:
        raise ImageFetchError(f"{url}: {exc.strerror}") from exc
    return partial.stat().st_size


def _download_http(url: str, partial: Path, meter: _Meter) -> int:
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # byte ranges of the file itself, not of a gzip
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise DownloadInterrupted(f"{url}: {exc.__class__.__name__}: {exc}") from exc
    with resp:
        if resp.status_code == 416 and offset:
            return _after_416(url, partial, resp, offset, meter)
        if resp.status_code == 206 and offset:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise ImageFetchError(f"{url}: 206 with unexpected Content-Range")
            total = None if match.group(3) == "*" else int(match.group(3))
            log.info("resuming %s at byte %d", url, offset)
        elif resp.status_code == 200:
            if offset:
                log.info("%s: server ignored Range; restarting from zero", url)
            offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise ImageFetchError(f"{url}: HTTP {resp.status_code}")
        meter.start(total, offset)
        written = offset
        try:
            with partial.open("r+b" if offset else "wb") as dst:
                dst.seek(offset)
                dst.truncate()
                for chunk in resp.iter_content(CHUNK):
                    dst.write(chunk)
                    written += len(chunk)
                    meter.advance(len(chunk))
        except requests.RequestException as exc:
            raise DownloadInterrupted(
                f"{url}: transfer stopped at byte {written} ({exc.__class__.__name__}); "
                "run again to resume"
            ) from exc
        if total is not None and written != total:
            raise DownloadInterrupted(f"{url}: got {written} of {total} bytes; run again to resume")
    return written


def _after_416(url: str, partial: Path, resp: requests.Response, offset: int, meter: _Meter) -> int:
    """Range not satisfiable: the partial is already complete, or it is stale and restarts."""
    match = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", ""))
    if match and int(match.group(1)) == offset:
        meter.start(offset, offset)
        return offset
    log.info("%s: partial file (%d bytes) does not fit the remote file; restarting", url, offset)
    partial.unlink()
    return _download_http(url, partial, meter)


__all__ = ["download", "fetch_small"]
