"""Outgoing mail through the outbox, to a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest

from core.config import Config, Secret
from tests.support.smtp import smtp_server
from tests.support.tls import make_certificates
from tests.vaultapi.conftest import running_api
from vaultapi.mail.outbox import Mail, enqueue
from vaultapi.mail.sender import MailSender


def mail_settings(port: int, **more: object) -> dict[str, object]:
    return {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "off",
            "smtp_from": "vault@example.com", **more}


async def test_a_committed_mail_arrives_once_and_leaves_no_body(database_url: str, db: asyncpg.Connection) -> None:
    with smtp_server() as (inbox, port):
        async with running_api(database_url, **mail_settings(port)):
            async with db.transaction():
                await enqueue(db, Mail("dave@example.com", "Hello", "code 123456"))
            [mail] = await inbox.wait("dave@example.com")
            assert (mail.sender, mail.subject, mail.text.strip()) == ("vault@example.com", "Hello", "code 123456")
            assert mail.message["Message-ID"] and mail.message["Date"]
            async with asyncio.timeout(10):
                while (row := await db.fetchrow("SELECT * FROM mail_outbox"))["sent_at"] is None:
                    await asyncio.sleep(0.05)
            assert (row["attempts"], row["body"], row["last_error"]) == (1, "", None)
            await asyncio.sleep(1.5)  # a poll or two later: still one
            assert len(inbox.to("dave@example.com")) == 1


async def test_a_rolled_back_mail_never_leaves(database_url: str, db: asyncpg.Connection) -> None:
    with smtp_server() as (inbox, port):
        async with running_api(database_url, **mail_settings(port)):
            with pytest.raises(RuntimeError):
                async with db.transaction():
                    await enqueue(db, Mail("erin@example.com", "Never", "rolled back"))
                    raise RuntimeError("the change failed")
            await enqueue(db, Mail("erin@example.com", "After", "committed"))
            [mail] = await inbox.wait("erin@example.com")
            await asyncio.sleep(1.5)
            assert [m.subject for m in inbox.to("erin@example.com")] == ["After"] == [mail.subject]
            assert await db.fetchval("SELECT count(*) FROM mail_outbox") == 1


async def test_two_replicas_deliver_each_mail_exactly_once(database_url: str, db: asyncpg.Connection) -> None:
    with smtp_server() as (inbox, port):
        async with running_api(database_url, **mail_settings(port)), running_api(database_url, **mail_settings(port)):
            for number in range(40):
                await enqueue(db, Mail(f"user{number}@example.com", f"Mail {number}", f"body {number}"))
            for number in range(40):
                await inbox.wait(f"user{number}@example.com")
            await asyncio.sleep(2)  # both replicas polled again: nothing went twice
            assert sorted(m.subject for m in inbox.mails) == sorted(f"Mail {n}" for n in range(40))
            assert await db.fetchval("SELECT count(*) FROM mail_outbox WHERE sent_at IS NULL OR attempts <> 1") == 0


async def test_a_refused_mail_is_retried_after_a_pause(database_url: str, db: asyncpg.Connection) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    with smtp_server() as (inbox, port):
        inbox.refuse_next = 1  # 451: try again later
        sender = MailSender(pool, Config(**mail_settings(port)), poll_interval=0.05, backoff=0.5)
        await enqueue(db, Mail("frank@example.com", "Retry", "second time lucky"))
        assert await sender.send_due()
        row = await db.fetchrow("SELECT * FROM mail_outbox")
        assert (row["attempts"], row["sent_at"], row["last_error"]) == (1, None, "SMTPRecipientsRefused")
        assert row["body"] == "second time lucky"
        assert not await sender.send_due()  # not due before its pause
        sender.start()
        try:
            [mail] = await inbox.wait("frank@example.com")
        finally:
            await sender.stop()
            await pool.close()
        assert mail.subject == "Retry"
        row = await db.fetchrow("SELECT * FROM mail_outbox")
        assert (row["attempts"], row["sent_at"] is not None) == (2, True)


# the loopback test server takes a login without TLS, which aiosmtpd warns about
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_smtp_login_works_and_a_wrong_password_stays_out_of_the_logs(
    database_url: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    caplog.set_level(logging.DEBUG)
    try:
        with smtp_server(login=("mailer", "s3cret-smtp-pass")) as (inbox, port):
            good = MailSender(pool, Config(**mail_settings(port, smtp_username="mailer",
                                                              smtp_password=Secret("s3cret-smtp-pass"))))
            await enqueue(db, Mail("gina@example.com", "Signed in", "hello"))
            assert await good.send_due()
            [mail] = inbox.to("gina@example.com")
            assert mail.subject == "Signed in"

            bad = MailSender(pool, Config(**mail_settings(port, smtp_username="mailer",
                                                             smtp_password=Secret("wrong-pass-xyz"))))
            await enqueue(db, Mail("hank@example.com", "Refused", "hello"))
            assert await bad.send_due()
            row = await db.fetchrow("SELECT * FROM mail_outbox WHERE recipient = 'hank@example.com'")
            # 535 is permanent: given up at once, not hammered with a bad password
            assert row["failed_at"] is not None and row["last_error"] == "SMTPAuthenticationError 535"
            assert inbox.to("hank@example.com") == []
    finally:
        await pool.close()
    assert "wrong-pass-xyz" not in caplog.text and "s3cret-smtp-pass" not in caplog.text
    assert "mail" in caplog.text


def test_mail_settings_are_checked() -> None:
    from core.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        Config.from_env({"SMTP_HOST": "mail.example.com", "SMTP_SECURITY": "tls", "SMTP_USERNAME": "x"})
    problems = "\n".join(refused.value.problems)
    assert "SMTP_SECURITY" in problems and "SMTP_FROM" in problems and "SMTP_PASSWORD" in problems
    config = Config.from_env({"SMTP_HOST": "mail.example.com", "SMTP_FROM": "vault@example.com",
                              "SMTP_SECURITY": "force_tls", "SMTP_PASSWORD": "pw", "SMTP_USERNAME": "u"})
    assert (config.mail_enabled, config.smtp_port_or_default) == (True, 465)
    assert "pw" not in repr(config)


async def test_smtp_security_is_kept(
    database_url: str, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """starttls and force_tls reach servers that speak them, with the server's certificate
    checked; starttls never falls back to plain text with a server that cannot upgrade."""
    certs = make_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))  # the default trust, as an operator sets it
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        for security, server in (("starttls", {"tls": certs}), ("force_tls", {"tls": certs, "implicit_tls": True})):
            with smtp_server(**server) as (inbox, port):
                sender = MailSender(pool, Config(**mail_settings(port, smtp_security=security)))
                await enqueue(db, Mail(f"{security}@example.com", security, "over TLS"))
                assert await sender.send_due()
                [mail] = inbox.to(f"{security}@example.com")
                assert mail.subject == security
        with smtp_server() as (inbox, port):  # no STARTTLS on offer
            sender = MailSender(pool, Config(**mail_settings(port, smtp_security="starttls")))
            await enqueue(db, Mail("plain@example.com", "never in the clear", "secret code"))
            assert await sender.send_due()
            assert inbox.to("plain@example.com") == []
            row = await db.fetchrow("SELECT * FROM mail_outbox WHERE recipient = 'plain@example.com'")
            assert row["sent_at"] is None and row["last_error"].startswith("SMTPException")
        monkeypatch.delenv("SSL_CERT_FILE")
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nothing-trusted.pem"))
        with smtp_server(tls=certs) as (inbox, port):  # a certificate nobody vouches for
            sender = MailSender(pool, Config(**mail_settings(port, smtp_security="starttls")))
            await enqueue(db, Mail("untrusted@example.com", "unverified", "secret code"))
            assert await sender.send_due()
            assert inbox.to("untrusted@example.com") == []
    finally:
        await pool.close()
