"""A real SMTP server on loopback (aiosmtpd), and what arrived at it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.processes import free_port
from tests.support.tls import TlsFiles

__all__ = ["Inbox", "smtp_server"]


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return self.message.get_content()

    def link(self) -> str:
        """The first link the mail carries."""
        found = re.search(r"https?://\S+", self.text)
        assert found, self.text
        return found.group(0)

    def code(self, digits: int = 6) -> str:
        """The code of digits a code mail carries."""
        found = re.search(rf"\b(\d{{{digits}}})\b", self.text)
        assert found, self.text
        return found.group(1)


class Inbox:
    """Every mail the server accepted, in order; a test waits for them from its own loop."""

    def __init__(self) -> None:
        self.mails: list[Received] = []
        self.refuse_next = 0
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self._lock:
            if self.refuse_next:
                self.refuse_next -= 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.mails.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return [mail for mail in self.mails if address in mail.recipients]

    async def wait(self, address: str, count: int = 1, timeout: float = 20.0) -> list[Received]:
        """The first `count` mails to the address, once they arrived."""
        async with asyncio.timeout(timeout):
            while len(self.to(address)) < count:
                await asyncio.sleep(0.05)
        return self.to(address)[:count]


class _Login:
    """Accepts one username and password (AUTH PLAIN or LOGIN)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username.encode(), password.encode()

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.username, self.password)
        return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(login: tuple[str, str] | None = None, tls: TlsFiles | None = None,
                implicit_tls: bool = False) -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1: (its inbox, its port). With `login`, it wants that username
    and password (allowed in the clear: loopback only). With `tls`, it takes mail only after
    STARTTLS, or, with `implicit_tls`, speaks TLS from the first byte."""
    inbox = Inbox()
    port = free_port()
    options: dict[str, Any] = (
        {"authenticator": _Login(*login), "auth_required": True, "auth_require_tls": False} if login else {})
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        options |= {"ssl_context": context} if implicit_tls else {"tls_context": context, "require_starttls": True}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
        controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
