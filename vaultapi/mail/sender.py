"""The sender: each API replica runs one, and each mail leaves through exactly one of them.

A sender claims due rows of mail_outbox with FOR UPDATE SKIP LOCKED, and the claim itself moves
the row's next attempt a lease into the future, so the row lock is gone before any SMTP traffic:
no transaction stays open while a server answers, and the other replicas skip the row until the
lease ends. A sent row is marked sent and its body blanked; a refused one is tried again after a
growing pause, up to MAX_ATTEMPTS, and a permanent refusal (an SMTP 5xx) ends it at once. A
replica that dies between sending and marking leaves the row to be sent again after the lease:
the only case in which a mail can arrive twice.

Log lines name the row, never the body (it may hold a code) nor the SMTP password.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from email.message import EmailMessage

import aiosmtplib
import asyncpg

from core.config import Config

__all__ = ["BACKOFF", "LEASE", "MAX_ATTEMPTS", "POLL_INTERVAL", "MailSender"]

log = logging.getLogger(__name__)

#: seconds between two looks at the outbox when it was empty
POLL_INTERVAL = 1.0
#: seconds a claimed row stays with its sender: well above an SMTP exchange's timeout
LEASE = 300
#: attempts before a mail is given up
MAX_ATTEMPTS = 8
#: seconds before the second attempt; each later one waits twice as long (at most an hour)
BACKOFF = 30.0
#: rows one claim takes
BATCH = 10


class MailSender:
    def __init__(self, pool: asyncpg.Pool, config: Config, *, poll_interval: float = POLL_INTERVAL,
                 backoff: float = BACKOFF) -> None:
        self.pool = pool
        self.config = config
        self.poll_interval = poll_interval
        self.backoff = backoff
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mail-sender")

    async def stop(self) -> None:
        """Let a mail being sent finish (a few seconds at most), then stop."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=self.config.smtp_timeout)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent_any = await self.send_due()
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("mail outbox unreachable (%s); trying again", type(error).__name__)
                sent_any = False
            if not sent_any:
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_interval)
                except TimeoutError:
                    pass

    async def send_due(self) -> bool:
        """Claim and send the due rows; whether there were any."""
        rows = await self.pool.fetch(
            """
            WITH due AS (
                SELECT id FROM mail_outbox
                 WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                 ORDER BY next_attempt_at, id
                   FOR UPDATE SKIP LOCKED
                 LIMIT $1)
            UPDATE mail_outbox m SET attempts = m.attempts + 1,
                                     next_attempt_at = now() + $2::integer * interval '1 second'
              FROM due WHERE m.id = due.id
            RETURNING m.id, m.recipient, m.subject, m.body, m.attempts
            """,
            BATCH, LEASE)
        for row in rows:
            if self._stopping.is_set():
                # not sent: the next claim of any replica takes it once the lease ends; give it back now
                await self.pool.execute(
                    "UPDATE mail_outbox SET attempts = attempts - 1, next_attempt_at = now() WHERE id = $1", row["id"])
                continue
            await self._send_one(row)
        return bool(rows)

    async def _send_one(self, row: asyncpg.Record) -> None:
        try:
            await self._deliver(row["recipient"], row["subject"], row["body"])
        except aiosmtplib.SMTPException as error:
            await self._refused(row, error)
            return
        except OSError as error:
            await self._refused(row, error)
            return
        await self.pool.execute("UPDATE mail_outbox SET sent_at = now(), body = '', last_error = NULL WHERE id = $1",
                                row["id"])
        log.info("mail %d sent", row["id"])

    async def _refused(self, row: asyncpg.Record, error: Exception) -> None:
        code = getattr(error, "code", None)
        permanent = isinstance(code, int) and 500 <= code < 600
        final = permanent or row["attempts"] >= MAX_ATTEMPTS
        delay = min(self.backoff * 2 ** (row["attempts"] - 1), 3600.0)
        reason = f"{type(error).__name__}" + (f" {code}" if code else "")
        await self.pool.execute(
            """
            UPDATE mail_outbox SET last_error = $2, next_attempt_at = now() + $3::float8 * interval '1 second',
                                   failed_at = CASE WHEN $4 THEN now() END,
                                   body = CASE WHEN $4 THEN '' ELSE body END
             WHERE id = $1
            """,
            row["id"], reason, delay, final)
        if final:
            log.error("mail %d given up after %d attempts: %s", row["id"], row["attempts"], reason)
        else:
            log.warning("mail %d not sent (%s); attempt %d of %d in %.0f s",
                        row["id"], reason, row["attempts"] + 1, MAX_ATTEMPTS, delay)

    async def _deliver(self, recipient: str, subject: str, body: str) -> None:
        config = self.config
        message = EmailMessage()
        message["From"] = config.smtp_from
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = email.utils.formatdate(usegmt=True)
        message["Message-ID"] = email.utils.make_msgid(domain=(config.smtp_from or "").rpartition("@")[2] or None)
        message.set_content(body)
        await aiosmtplib.send(
            message,
            hostname=config.smtp_host,
            port=config.smtp_port_or_default,
            username=config.smtp_username,
            password=config.smtp_password.reveal() if config.smtp_password else None,
            use_tls=config.smtp_security == "force_tls",
            # starttls is required, never optional: a server that cannot upgrade gets no mail in the clear
            start_tls=config.smtp_security == "starttls",
            timeout=config.smtp_timeout,
        )
