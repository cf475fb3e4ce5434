"""An overall deadline per SMTP message, on top of smtplib's per-read timeout.

smtplib's ``timeout`` bounds each read: a server that trickles a never-ending
greeting or reply (a tarpit: a ``220-`` line every second) answers every read
in time and holds the client forever. Here every read and write on the
connection (plain, STARTTLS, implicit TLS; connecting and the TLS handshake
included) waits at most the time left on a monotonic per-message ``Clock``,
and a timeout at the deadline says so (``DeadlineExceeded``).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class DeadlineExceeded(TimeoutError):
    """The message's overall deadline passed (the server was slow, not silent)."""


class Clock:
    """A message's monotonic deadline; what each read or write may wait for."""

    def __init__(self, per_read: float, overall: float) -> None:
        self.per_read = per_read
        self.overall = overall
        self.until = time.monotonic() + overall

    def restart(self) -> None:
        self.until = time.monotonic() + self.overall

    def _passed(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"no complete reply within the {self.overall:g} s deadline")

    def timeout(self) -> float:
        """min(per-read timeout, time left); DeadlineExceeded once none is left."""
        left = self.until - time.monotonic()
        if left <= 0:
            raise self._passed()
        return min(self.per_read, left)

    @contextmanager
    def wait(self, sock: socket.socket) -> Iterator[None]:
        """One read or write on ``sock``: a timeout at the deadline says so."""
        sock.settimeout(self.timeout())
        try:
            yield
        except TimeoutError as exc:
            if isinstance(exc, DeadlineExceeded) or self.until > time.monotonic():
                raise
            raise self._passed() from None


class DeadlineSocket(socket.socket):
    """A socket whose every read and write waits at most the clock's time left."""

    clock: Clock

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        with self.clock.wait(self):
            return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        with self.clock.wait(self):
            return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        with self.clock.wait(self):
            return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        with self.clock.wait(self):
            super().sendall(data, flags)


class DeadlineSSLSocket(ssl.SSLSocket):
    """The same for TLS (STARTTLS or implicit): set as the context's socket class."""

    clock: Clock

    def do_handshake(self, block: bool = False) -> None:
        with self.clock.wait(self):
            super().do_handshake(block)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        with self.clock.wait(self):
            return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        with self.clock.wait(self):
            return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        with self.clock.wait(self):
            return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        with self.clock.wait(self):
            super().sendall(data, flags)


def connect_socket(clock: Clock, address: tuple[str, int],
                    source: Any) -> socket.socket:
    """A connected socket on ``clock``: TCP connect itself waits at most the time left."""
    raw = socket.create_connection(address, clock.timeout(), source)
    sock = DeadlineSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
    sock.clock = clock
    return sock


class DeadlineSMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket keeps the message deadline."""

    clock: Clock
    _host: str

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return connect_socket(self.clock, (host, port), self.source_address)


class DeadlineSMTPSSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL whose socket keeps the message deadline."""

    clock: Clock
    _host: str

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = connect_socket(self.clock, (host, port), self.source_address)
        return self.context.wrap_socket(sock, server_hostname=host)


def deadline_passed(exc: BaseException) -> str | None:
    """The deadline message when ``exc`` is, or was raised while handling, one
    (smtplib turns a failed read into SMTPServerDisconnected)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DeadlineExceeded):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def clocked_ssl_class(clock: Clock) -> type[ssl.SSLSocket]:
    """An SSLSocket class whose sockets keep ``clock`` (for ``SSLContext.sslsocket_class``)."""
    return type("ClockedSSLSocket", (DeadlineSSLSocket,), {"clock": clock})
