"""Errors of the production image fetcher: permanent (bad pin, bad bytes) or temporary."""

from __future__ import annotations

from mayu_py.errors import MayuError


class ImageFetchError(MayuError):
    """A fetch failed for good: unknown image or version, HTTP error, bad catalog."""

    status = 500


class VerificationError(ImageFetchError):
    """Downloaded bytes do not match the published checksum or signature; nothing was kept."""


class DownloadInterrupted(ImageFetchError):
    """The transfer stopped early; the partial file is kept and the next run resumes it."""

    temporary = True
