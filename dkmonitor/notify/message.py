"""One RFC 5322 message with headers nobody can inject into.

Subjects name the host and target path, and a target path (like a user name)
may hold any byte but NUL and '/': a newline in it must not start a new
header. Header values go through ``clean_text``; addresses must pass the
strict check in ``addresses``; anything else raises HeaderError, which the
caller records as that one mail's failure.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from dkmonitor.notify.addresses import is_valid_address


class HeaderError(ValueError):
    """A header value that must not be sent (bad address)."""


def clean_text(value: str) -> str:
    """``value`` with control characters as '?' and undecodable bytes as U+FFFD.

    File names decoded with surrogateescape carry lone surrogates that no
    mail encoding can represent; CR, LF, TAB and the other C0/C1 controls are
    what header injection and terminal tricks are made of.
    """
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in value)


def message_domain(sender: str) -> str:
    """The domain for Message-IDs: the sender's, else a reserved placeholder.

    Taken from the configuration rather than ``socket.getfqdn()``, which can
    hang for the DNS timeout on a host with broken resolution.
    """
    domain = sender.rpartition("@")[2] if "@" in sender else ""
    return domain if domain and is_valid_address(f"x@{domain}") else "dkmonitor.invalid"


def build_message(
    *, sender: str, recipients: Sequence[str], subject: str, body: str
) -> EmailMessage:
    """A plain-text UTF-8 message; HeaderError if an address is unsafe."""
    for address in (sender, *recipients):
        if not is_valid_address(address):
            raise HeaderError(f"refusing unsafe mail address {clean_text(address)!r}")
    if not recipients:
        raise HeaderError("no recipient")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = clean_text(subject)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(idstring="dkmonitor", domain=message_domain(sender))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies back
    message.set_content(body if body.endswith("\n") else body + "\n")
    return message
