"""The include and exclude patterns of a crawl, compiled with RE2.

Patterns come from API callers and are matched against URLs that crawled
pages choose, so Python's backtracking ``re`` would let a pattern such as
``(a+)+$`` and one hostile link stall a whole process for minutes. RE2
matches in time linear in the URL's length. Its syntax is Python's without
look-around assertions and back-references, which it rejects at compile time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

_OPTIONS = re2.Options()
# RE2 otherwise writes every syntax error to stderr besides raising it.
_OPTIONS.log_errors = False


class PatternError(ValueError):
    """A pattern is not valid RE2 syntax; the message gives the reason."""


@dataclass(frozen=True, slots=True)
class UrlPattern:
    """A compiled pattern and the text it came from."""

    text: str
    _compiled: Any

    def search(self, url: str) -> bool:
        """Return True if the pattern matches anywhere in ``url``."""
        return self._compiled.search(url) is not None


def compile_pattern(text: str) -> UrlPattern:
    """Compile ``text`` with RE2, raising PatternError with RE2's reason."""
    try:
        compiled = re2.compile(text, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason)) from exc
    return UrlPattern(text, compiled)
