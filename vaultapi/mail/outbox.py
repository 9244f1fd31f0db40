"""The outbox: a mail is a row, inserted by the transaction that decides it must go out.

So a change that rolls back sends nothing, and no request waits for an SMTP server: the
sender (vaultapi.mail.sender) delivers the row after the commit, from whichever API replica
claims it first.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from sanic import Request

from vaultapi.errors import ApiError

__all__ = ["Mail", "enqueue", "require_mail"]


@dataclass(frozen=True)
class Mail:
    """One plain-text mail to one address."""

    recipient: str
    subject: str
    body: str


async def enqueue(conn: asyncpg.Connection | asyncpg.Pool, mail: Mail) -> None:
    """Queue the mail; call it inside the transaction whose commit decides it (or on the pool
    when nothing else is written)."""
    await conn.execute("INSERT INTO mail_outbox (recipient, subject, body) VALUES ($1, $2, $3)",
                       mail.recipient, mail.subject, mail.body)


def require_mail(request: Request) -> None:
    """A 400 on a server without SMTP_HOST, the same whoever asks."""
    if not request.app.ctx.config.mail_enabled:
        raise ApiError("This server sends no mail.")
