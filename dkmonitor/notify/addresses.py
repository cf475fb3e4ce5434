"""Who a user's mail goes to: ``username@user_postfix`` or the address map.

Every address is checked against a strict pattern before it can reach a
header or an SMTP envelope: a user name is data from the file system's owner
database, and nothing in it may turn into a second header or recipient.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from dkmonitor.errors import ConfigError

# A dot-atom local part and a host name: deliberately stricter than RFC 5322
# (no quoted strings, no comments, no IP literals), which real user addresses
# never need. Whitespace and control characters can never match.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_ADDRESS = re.compile(rf"{_LOCAL}(?:@{_DOMAIN})?")

NO_MAIL = "-"  # address map entry meaning: never mail this user


def is_valid_address(address: str) -> bool:
    """A plain ``local@domain`` (or bare local name, for local delivery)."""
    return bool(address) and len(address) <= 254 and _ADDRESS.fullmatch(address) is not None


def load_address_map(path: str | None) -> dict[str, str]:
    """``username address`` lines; ``#`` starts a comment; ``-`` as address: no mail.

    Raises ConfigError naming the file and line, so a broken map fails the
    configuration check rather than one user's mail.
    """
    if not path:
        return {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"[email] address_map = {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"[email] address_map = {path}: {exc.strerror}") from None
    mapping: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        fields = content.split()
        if len(fields) != 2:
            raise ConfigError(f"{path}:{number}: expected 'username address', got {content!r}")
        username, address = fields
        if address != NO_MAIL and not is_valid_address(address):
            raise ConfigError(f"{path}:{number}: {address!r} is not a valid mail address")
        mapping[username] = address
    return mapping


def address_for(username: str, user_postfix: str, address_map: Mapping[str, str]) -> str | None:
    """The user's address; None when the map says not to mail them.

    With an empty ``user_postfix`` the bare user name is used, which a local
    MTA delivers to the local mailbox. The result is not validated here:
    callers check it with ``is_valid_address`` and record a failure if it is
    bad, so that a hostile user name is reported rather than silently mailed.
    """
    mapped = address_map.get(username)
    if mapped is not None:
        return None if mapped == NO_MAIL else mapped
    return f"{username}@{user_postfix}" if user_postfix else username
