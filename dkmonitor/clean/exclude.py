"""The settings' exclude globs, with the scanner's semantics.

A pattern containing '/' is matched against the absolute path, any other
pattern against the entry's name alone; a matching directory is pruned with
everything below it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase


def is_excluded(patterns: tuple[str, ...], abs_path: str, name: str) -> bool:
    for pattern in patterns:
        subject = abs_path if "/" in pattern else name
        if fnmatchcase(subject, pattern):
            return True
    return False
