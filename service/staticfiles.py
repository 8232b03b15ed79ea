"""Static files (the admin's, the API docs'): WhiteNoise serves them compressed under hashed names.

``collectstatic`` (run in the image and by ``make run``) writes hashed, gzip-compressed copies and a manifest
into ``STATIC_ROOT``; WhiteNoise serves them with far-future cache headers. Without a collected file (a test
process, a checkout that never ran collectstatic) a page still renders with the plain name instead of failing
with a 500: only its styling is missing.
"""

from __future__ import annotations

from typing import Any

from whitenoise.storage import CompressedManifestStaticFilesStorage


class Storage(CompressedManifestStaticFilesStorage):
    manifest_strict = False  # a name missing from the manifest falls back instead of raising

    def hashed_name(self, name: str, content: Any = None, filename: str | None = None) -> str:
        try:
            return str(super().hashed_name(name, content, filename))
        except ValueError:
            if content is not None:  # collectstatic itself: a broken reference must fail loudly
                raise
            return name
