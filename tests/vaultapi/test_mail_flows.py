"""The flows that mail: registration by link, two-step codes by email, email change, the
password hint, the new-device notice; against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs

import asyncpg
import httpx
import pytest

from db.events import PushType
from tests.support.bwclient import BitwardenClient
from tests.support.listen import EventListener
from tests.support.organizations import Organization
from tests.support.smtp import Inbox, smtp_server
from tests.vaultapi.conftest import PASSWORD, client_factory, running_api
from tests.vaultapi.test_mail import mail_settings
from vaultapi.clientcrypto import SymmetricKey, make_account_keys, master_key, master_password_hash


@pytest.fixture
async def mailing_api(database_url: str) -> AsyncIterator[tuple[str, Inbox]]:
    with smtp_server() as (inbox, port):
        # every client is 127.0.0.1: room for the logins these tests make
        async with running_api(database_url, **mail_settings(port), login_ratelimit_max_burst=100) as url:
            yield url, inbox


@pytest.fixture
async def clients(mailing_api: tuple[str, Inbox]) -> AsyncIterator[Callable[..., BitwardenClient]]:
    async with client_factory(mailing_api[0]) as make:
        yield make


async def signed_up(clients: Callable[..., BitwardenClient], inbox: Inbox, email: str) -> BitwardenClient:
    client = clients()
    await client.register_by_mail(email, PASSWORD, inbox, name="Mailed")
    await client.login()
    return client


async def test_registration_goes_through_the_mailed_link(
    mailing_api: tuple[str, Inbox], clients: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    url, inbox = mailing_api
    client = await signed_up(clients, inbox, "Ivy@Example.com")
    [mail] = inbox.to("ivy@example.com")
    assert mail.subject == "Verify your email to finish registering" and "#/finish-signup?token=" in mail.link()
    assert (await client.get("/api/accounts/profile")).json()["email"] == "ivy@example.com"

    async with httpx.AsyncClient(base_url=url) as http:
        # the legacy route proves no address: refused while mail is on
        keys = make_account_keys("jo@example.com", PASSWORD, 100_000)
        legacy = await http.post("/identity/accounts/register", json={
            "email": "jo@example.com", "masterPasswordHash": keys.master_password_hash, "key": keys.key,
            "kdf": 0, "kdfIterations": 100_000})
        assert legacy.status_code == 400
        # a taken address: the same empty reply, and no mail
        again = await http.post("/identity/accounts/register/send-verification-email", json={"email": "ivy@example.com"})
        assert (again.status_code, again.content) == (204, b"")
    assert await db.fetchval("SELECT count(*) FROM users") == 1
    assert await db.fetchval("SELECT count(*) FROM mail_outbox") == 1


async def test_email_two_step_codes_work_once_and_not_late(
    mailing_api: tuple[str, Inbox], clients: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    url, inbox = mailing_api
    kim = await signed_up(clients, inbox, "kim@example.com")
    got = (await kim.post("/api/two-factor/get-email", {"masterPasswordHash": kim.password_hash()})).json()
    assert (got["enabled"], got["email"], got["object"]) == (False, None, "twoFactorEmail")
    token = got["userVerificationToken"]
    assert (await kim.post("/api/two-factor/send-email", {"email": "kim.2fa@example.com",
                                                          "userVerificationToken": token})).status_code == 200
    [setup] = await inbox.wait("kim.2fa@example.com")
    # the code proves this very address, not another
    assert (await kim.put("/api/two-factor/email", {"email": "other@example.com", "token": setup.code(),
                                                    "userVerificationToken": token})).status_code == 400
    enabled = await kim.put("/api/two-factor/email", {"email": "kim.2fa@example.com", "token": setup.code(),
                                                      "userVerificationToken": token})
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True

    laptop = clients()
    laptop.email, laptop.password = "kim@example.com", PASSWORD
    challenge = (await laptop.request_token()).json()
    assert challenge["TwoFactorProviders2"] == {"1": {"Email": "ki*****@example.com"}}
    assert challenge["Email"] == "kim@example.com" and challenge["SsoEmail2faSessionToken"]

    async def send_login(**proof: str) -> httpx.Response:
        return await laptop.http.post("/api/two-factor/send-email-login", json={"email": "kim@example.com", **proof})

    assert (await send_login(masterPasswordHash=laptop.password_hash("wrong"))).status_code == 400
    assert (await send_login(ssoEmail2FaSessionToken="forged")).status_code == 400
    assert len(inbox.to("kim.2fa@example.com")) == 1  # nothing sent for those
    assert (await send_login(ssoEmail2FaSessionToken=challenge["SsoEmail2faSessionToken"])).status_code == 200
    code = (await inbox.wait("kim.2fa@example.com", 2))[1].code()

    wrong = "000000" if code != "000000" else "111111"
    assert (await laptop.request_token(two_factor=(1, wrong))).status_code == 400
    assert (await laptop.request_token(two_factor=(1, code))).status_code == 200
    assert (await laptop.request_token(two_factor=(1, code))).status_code == 400  # used up

    assert (await send_login(masterPasswordHash=laptop.password_hash())).status_code == 200
    late = (await inbox.wait("kim.2fa@example.com", 3))[2].code()
    await db.execute("UPDATE one_time_codes SET expires_at = now() - interval '1 second'")
    assert (await laptop.request_token(two_factor=(1, late))).status_code == 400


async def test_email_change_takes_the_mailed_code_and_logs_other_devices_out(
    mailing_api: tuple[str, Inbox], clients: Callable[..., BitwardenClient], db: asyncpg.Connection,
    events: EventListener,
) -> None:
    url, inbox = mailing_api
    lee = await signed_up(clients, inbox, "lee@example.com")
    await signed_up(clients, inbox, "taken@example.com")
    user_id = await db.fetchval("SELECT id FROM users WHERE email = 'lee@example.com'")

    asked = await lee.post("/api/accounts/email-token", {"newEmail": "Lee.New@example.com",
                                                         "masterPasswordHash": lee.password_hash()})
    assert asked.status_code == 200, asked.text
    [mail] = await inbox.wait("lee.new@example.com")
    # as a client does: the same user key, wrapped under the master key the new salt gives
    new_master = master_key(PASSWORD, "lee.new@example.com", 100_000)
    change = {"newEmail": "lee.new@example.com", "masterPasswordHash": lee.password_hash(),
              "newMasterPasswordHash": master_password_hash(new_master, PASSWORD),
              "key": SymmetricKey.stretch(new_master).encrypt(lee.user_key.to_bytes())}
    wrong = "000000" if mail.code() != "000000" else "111111"
    assert (await lee.post("/api/accounts/email", {**change, "token": wrong})).status_code == 400
    assert (await lee.post("/api/accounts/email", {**change, "token": mail.code(),
                                                   "masterPasswordHash": lee.password_hash("bad")})).status_code == 400
    assert await db.fetchval("SELECT email FROM users WHERE id = $1", user_id) == "lee@example.com"

    done = await lee.post("/api/accounts/email", {**change, "token": mail.code()})
    assert done.status_code == 200, done.text
    assert await db.fetchval("SELECT email FROM users WHERE id = $1", user_id) == "lee.new@example.com"
    event = await events.next()
    assert (event.type, event.user_id, event.device_identifier) == (PushType.LOG_OUT, str(user_id), lee.device)
    assert (await lee.get("/api/accounts/profile")).status_code == 401  # the old session ended
    assert (await lee.post("/api/accounts/email", {**change, "token": mail.code()})).status_code == 401

    fresh = clients()
    fresh.iterations = 100_000
    await fresh.login("lee.new@example.com", PASSWORD)  # the new salt and hash work
    old = clients()
    old.email, old.password = "lee@example.com", PASSWORD
    assert (await old.request_token()).status_code == 400

    # an address with an account: no code to it, a notice to the current one
    assert (await fresh.post("/api/accounts/email-token", {"newEmail": "taken@example.com",
                                                           "masterPasswordHash": fresh.password_hash()})
            ).status_code == 200
    mails = await inbox.wait("lee.new@example.com", 3)
    assert [mail.subject for mail in mails] == [
        "Your email change code", "New login to your account", "Your email was not changed"]
    assert len(inbox.to("taken@example.com")) == 1  # its own registration mail only


async def test_password_hint_answers_alike_for_unknown_addresses(
    mailing_api: tuple[str, Inbox], clients: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    url, inbox = mailing_api
    max_ = await signed_up(clients, inbox, "max@example.com")
    await max_.put("/api/accounts/profile", {"name": "Max", "masterPasswordHint": "the usual one"})
    async with httpx.AsyncClient(base_url=url) as http:
        known = await http.post("/api/accounts/password-hint", json={"email": "MAX@example.com"})
        unknown = await http.post("/api/accounts/password-hint", json={"email": "nobody@example.com"})
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content) == (200, b"")
    hint = (await inbox.wait("max@example.com", 2))[1]
    assert hint.subject == "Your master password hint" and "the usual one" in hint.text
    assert inbox.to("nobody@example.com") == []
    assert await db.fetchval("SELECT count(*) FROM mail_outbox WHERE recipient = 'nobody@example.com'") == 0


async def test_without_mail_the_mail_flows_refuse_alike(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        for email in ("someone@example.com", "nobody@example.com"):
            reply = await http.post("/api/accounts/password-hint", json={"email": email})
            assert reply.status_code == 400 and reply.json()["message"] == "This server sends no mail."


async def test_a_new_device_is_told_to_the_owner_once(
    mailing_api: tuple[str, Inbox], clients: Callable[..., BitwardenClient]
) -> None:
    url, inbox = mailing_api
    nia = await signed_up(clients, inbox, "nia@example.com")
    assert len(inbox.to("nia@example.com")) == 1  # the first device: no notice
    phone = clients()
    await phone.login("nia@example.com", PASSWORD)
    notice = (await inbox.wait("nia@example.com", 2))[1]
    assert notice.subject == "New login to your account" and "linux" in notice.text
    await phone.login("nia@example.com", PASSWORD)
    await nia.login()
    await phone.login("nia@example.com", PASSWORD)
    assert len(inbox.to("nia@example.com")) == 2


async def test_invitations_go_by_mail_and_are_accepted_with_their_token(
    mailing_api: tuple[str, Inbox], clients: Callable[..., BitwardenClient], db: asyncpg.Connection
) -> None:
    url, inbox = mailing_api
    owner = await signed_up(clients, inbox, "owner@example.com")
    pat = await signed_up(clients, inbox, "pat@example.com")
    organization = await Organization.create(owner, "Mailers")
    pat_id = await organization.invite("pat@example.com")
    quin_id = await organization.invite("quin@example.com")
    statuses = dict(await db.fetch("SELECT coalesce(email, 'account'), status FROM memberships WHERE organization_id = $1"
                                   " AND type <> 0", organization.id))
    assert statuses == {"pat@example.com": 0, "quin@example.com": 0}  # Invited, even with an account

    invitation = (await inbox.wait("pat@example.com", 2))[1]
    assert invitation.subject == "Join an organization" and "Mailers" in invitation.text
    params = parse_qs(invitation.link().split("?", 1)[1])
    assert (params["organizationUserId"], params["orgUserHasExistingUser"]) == ([pat_id], ["true"])
    token = params["token"][0]
    accept = f"{organization.path}/users/{pat_id}/accept"

    # a forged token, a token for another membership, another account with the right token
    assert (await pat.post(accept, {"token": "x.y.z"})).status_code == 400
    assert (await pat.post(f"{organization.path}/users/{quin_id}/accept", {"token": token})).status_code == 400
    assert (await owner.post(accept, {"token": token})).status_code == 400
    assert await db.fetchval("SELECT status FROM memberships WHERE id = $1", pat_id) == 0

    assert (await pat.post(accept, {"token": token})).status_code == 200
    row = await db.fetchrow("SELECT status, email, user_id FROM memberships WHERE id = $1", pat_id)
    assert (row["status"], row["email"]) == (1, None) and row["user_id"] is not None
    assert (await pat.post(accept, {"token": token})).status_code == 400  # once only
    assert (await owner.confirm_member(organization.id, pat_id)).status_code == 200
    assert [o["name"] for o in (await pat.sync())["profile"]["organizations"]] == ["Mailers"]

    # an address without an account registers by its own link, and the invitation comes with it
    quin_mail = (await inbox.wait("quin@example.com"))[0]
    assert parse_qs(quin_mail.link().split("?", 1)[1])["orgUserHasExistingUser"] == ["false"]
    await signed_up(clients, inbox, "quin@example.com")
    assert await db.fetchval("SELECT status FROM memberships WHERE id = $1", quin_id) == 1
