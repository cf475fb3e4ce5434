"""Delivering messages: over SMTP, or as .eml files into an outbox directory.

A mailer is opened once per run and used for all of that run's mails: one
SMTP connection (and one login) for a few hundred users instead of one each.
``send`` raises DeliveryError; ``connection=True`` means the server itself is
unusable (unreachable, TLS or login failed, dropped us), and the mailer then
fails every further message at once instead of waiting ``smtp_timeout``
seconds per user on a dead server.

Each message also has an overall deadline (``smtp_deadline``, from the
start of ``send`` to the server's last reply, connecting and logging in
included): every read and write on the connection waits at most the time
left, so a server that trickles a never-ending greeting or reply (a tarpit)
cannot hold a run, however often it answers within ``smtp_timeout``.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from dkmonitor.config import EmailSettings
from dkmonitor.notify.deadline import (
    Clock,
    DeadlineSMTP,
    DeadlineSMTPSSL,
    clocked_ssl_class,
    deadline_passed,
)
from dkmonitor.notify.message import clean_text
from dkmonitor.safefs import write_private_file

log = logging.getLogger(__name__)

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class DeliveryError(Exception):
    """A message was not delivered; ``connection`` when no further one can be."""

    def __init__(self, reason: str, *, connection: bool = False, attempted: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connection = connection
        self.attempted = attempted  # False: failed fast, the server being known dead


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Mailer: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def _recipients(message: EmailMessage) -> list[str]:
    return [part.strip() for part in str(message["To"]).split(",") if part.strip()]


def _smtp_reason(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
        exc.smtp_error, bytes) else str(exc.smtp_error)
    return clean_text(f"{exc.smtp_code} {text}".strip())


def _os_reason(exc: BaseException) -> str:
    passed = deadline_passed(exc)
    if passed:
        return passed
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return clean_text(str(exc)) or type(exc).__name__


class _Closing:
    """Context-manager plumbing shared by the mailers: ``with`` closes."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection, if any."""


class SmtpMailer(_Closing):
    """smtplib with the [email] settings: SSL or STARTTLS, optional login, timeout."""

    def __init__(self, email: EmailSettings, local_hostname: str | None = None) -> None:
        self.email = email
        self.where = f"mail server {email.smtp_host}:{email.smtp_port}"
        # EHLO name from settings: smtplib's default, socket.getfqdn(), may
        # block for the resolver's timeout on a host with broken DNS.
        self.local_hostname = (
            local_hostname if local_hostname and _HOSTNAME.fullmatch(local_hostname) else None
        )
        self._smtp: smtplib.SMTP | None = None
        self._clock = Clock(email.smtp_timeout, email.smtp_deadline)
        self._used = False
        self.dead: str | None = None  # why the server is unusable, once it is

    def _tls_context(self) -> ssl.SSLContext:
        """Certificates and host names are always verified: against the system's CAs,
        or against ``smtp_ca_file`` for a relay with a site-internal CA. Its
        sockets keep the message deadline (a subclass per mailer carries the clock)."""
        context = ssl.create_default_context(cafile=self.email.smtp_ca_file)
        context.sslsocket_class = clocked_ssl_class(self._clock)
        return context

    def _connect(self) -> smtplib.SMTP:
        email = self.email
        try:
            # Built unconnected, so the clock is in place before the greeting is read.
            if email.smtp_ssl:
                smtp: DeadlineSMTP | DeadlineSMTPSSL = DeadlineSMTPSSL(
                    local_hostname=self.local_hostname, timeout=email.smtp_timeout,
                    context=self._tls_context(),
                )
            else:
                smtp = DeadlineSMTP(local_hostname=self.local_hostname, timeout=email.smtp_timeout)
            smtp.clock = self._clock
            smtp._host = email.smtp_host  # what the constructor would set: STARTTLS checks it
            try:
                code, reply = smtp.connect(email.smtp_host, email.smtp_port)
                if code != 220:
                    raise smtplib.SMTPConnectError(code, reply)
                smtp.ehlo()
                if email.smtp_starttls:
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                if email.smtp_username:
                    smtp.login(email.smtp_username, email.smtp_password)
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPAuthenticationError as exc:
            reason = f"login as {email.smtp_username} refused: {_smtp_reason(exc)}"
            raise self._die(reason) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._die(f"{clean_text(str(exc))}") from None
        except smtplib.SMTPResponseException as exc:
            raise self._die(_smtp_reason(exc)) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self._die(_os_reason(exc)) from None
        return smtp

    def _die(self, reason: str) -> DeliveryError:
        self.dead = f"{self.where}: {reason}"
        log.debug("%s: failing the remaining mails of this run", self.dead)
        return DeliveryError(self.dead, connection=True)

    def send(self, message: EmailMessage) -> None:
        if self.dead:
            raise DeliveryError(
                f"not attempted: {self.dead}", connection=True, attempted=False
            )
        self._clock.restart()
        try:
            self._send_once(message)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            passed = deadline_passed(exc)
            if passed or not self._used:
                raise self._die(passed or "connection closed by the server") from None
            # A server may close an idle or long-used connection between
            # messages; one fresh connection is worth a try.
            self._used = False
            try:
                self._send_once(message)
            except smtplib.SMTPServerDisconnected as again:
                self._drop()
                reason = deadline_passed(again) or "connection closed by the server"
                raise self._die(reason) from None

    def _send_once(self, message: EmailMessage) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        recipients = _recipients(message)
        try:
            refused = self._smtp.send_message(
                message, from_addr=self.email.from_address, to_addrs=recipients
            )
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            reasons = "; ".join(
                f"{address}: {_smtp_reason(smtplib.SMTPResponseException(code, text))}"
                for address, (code, text) in exc.recipients.items()
            )
            raise DeliveryError(f"{self.where} refused the recipient: {reasons}") from None
        except smtplib.SMTPSenderRefused as exc:
            raise DeliveryError(
                f"{self.where} refused the sender {self.email.from_address}: {_smtp_reason(exc)}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{self.where} refused the message: {_smtp_reason(exc)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise self._die(_os_reason(exc)) from None
        self._used = True
        if refused:
            reasons = "; ".join(
                f"{address}: {_smtp_reason(smtplib.SMTPResponseException(code, text))}"
                for address, (code, text) in refused.items()
            )
            raise DeliveryError(f"{self.where} refused some recipients: {reasons}")

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self._drop()


class OutboxMailer(_Closing):
    """Writes each message as a .eml file: a first dry look at real mail.

    Files are written under a temporary name and renamed, so a reader
    (or a script forwarding the outbox) never sees half a message.
    """

    def __init__(self, outbox_dir: str) -> None:
        self.directory = Path(outbox_dir)
        self.written: list[Path] = []

    def send(self, message: EmailMessage) -> None:
        name = f"{message_stamp()}-{uuid.uuid4().hex[:12]}.eml"
        try:  # 0600 in a checked 0700 directory, never through a symlink (safefs)
            write_private_file(self.directory, name, message.as_bytes(policy=DEFAULT_POLICY))
        except OSError as exc:
            raise DeliveryError(
                f"outbox {self.directory}: cannot write {name}: {exc.strerror or exc}"
            ) from None
        self.written.append(self.directory / name)


def message_stamp() -> str:
    """UTC time for outbox file names: they sort in the order written."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def open_mailer(email: EmailSettings, local_hostname: str | None = None) -> Mailer:
    """The outbox when ``outbox_dir`` is set, else SMTP; connects lazily."""
    if email.outbox_dir:
        return OutboxMailer(email.outbox_dir)
    return SmtpMailer(email, local_hostname)
