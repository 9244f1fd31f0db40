"""What the clients are told pgwarden can do: nothing it would answer with a 404.

Premium makes the clients offer attachments and archive; a known device makes the login page
offer login with device. Neither exists yet, so neither is advertised, and each is one switch
in core.capabilities that these tests also flip to show it is the only place to change.
"""

from __future__ import annotations

import base64
import json

import asyncpg
import httpx
import pytest

from core import capabilities
from tests.support.bwclient import BitwardenClient
from vaultapi.models import devices


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def known_device_headers(email: str, device: str) -> dict[str, str]:
    encoded = base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")
    return {"X-Request-Email": encoded, "X-Device-Identifier": device}


async def _premium_as_seen_by(client: BitwardenClient) -> tuple[bool, bool, bool]:
    await client.login()
    profile = (await client.get("/api/accounts/profile")).json()
    sync = (await client.get("/api/sync")).json()
    return jwt_claims(client.access_token)["premium"], profile["premium"], sync["profile"]["premium"]


async def test_a_client_is_not_told_it_has_premium(alice: BitwardenClient) -> None:
    assert await _premium_as_seen_by(alice) == (False, False, False)
    assert (await alice.get("/api/accounts/profile")).json()["premiumFromOrganization"] is False


async def test_items_may_show_their_totp_code_without_premium(alice: BitwardenClient) -> None:
    # The desktop app, extension and web vault show an item's code when the account has premium
    # or the item says its TOTP may be used; codes are made client-side, so every item may.
    await alice.login()
    created = (await alice.post("/api/ciphers", alice.login_item("Mail"))).json()
    synced = (await alice.get("/api/sync")).json()["ciphers"]
    assert created["organizationUseTotp"] is True
    assert [item["organizationUseTotp"] for item in synced] == [True]


async def test_premium_is_one_switch(alice: BitwardenClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "PREMIUM", True)
    assert await _premium_as_seen_by(alice) == (True, True, True)


async def test_knowndevice_offers_login_with_device_for_a_device_that_logged_in(
        alice: BitwardenClient, db: asyncpg.Connection) -> None:
    # as Bitwarden answers: true once the device has logged in to the account
    assert await devices.is_known(db, "alice@example.com", alice.device) is True
    known = await alice.http.get("/api/devices/knowndevice",
                                 headers=known_device_headers("alice@example.com", alice.device))
    assert known.status_code == 200 and known.json() is True
    legacy = await alice.http.get(f"/api/devices/knowndevice/alice@example.com/{alice.device}")
    assert legacy.status_code == 200 and legacy.json() is True
    # malformed requests are still refused
    assert (await alice.http.get("/api/devices/knowndevice")).status_code == 400
    bad = await alice.http.get("/api/devices/knowndevice",
                               headers={"X-Request-Email": "%%%", "X-Device-Identifier": "d"})
    assert bad.status_code == 400


async def test_knowndevice_is_one_switch(alice: BitwardenClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "LOGIN_WITH_DEVICE", False)
    known = await alice.http.get("/api/devices/knowndevice",
                                 headers=known_device_headers("alice@example.com", alice.device))
    assert known.json() is False


async def test_knowndevice_knows_only_the_accounts_own_devices(alice: BitwardenClient) -> None:
    known = await alice.http.get("/api/devices/knowndevice",
                                 headers=known_device_headers("alice@example.com", alice.device))
    assert known.json() is True
    unknown = await alice.http.get("/api/devices/knowndevice",
                                   headers=known_device_headers("alice@example.com", "another-device"))
    assert unknown.json() is False
    stranger = await alice.http.get("/api/devices/knowndevice",
                                    headers=known_device_headers("bob@example.com", alice.device))
    assert stranger.json() is False
    legacy = await alice.http.get(f"/api/devices/knowndevice/alice@example.com/{alice.device}")
    assert legacy.json() is True


async def test_config_turns_no_feature_flag_on(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        config = (await http.get("/api/config")).json()
    # a missing flag takes the client's default, which is off for every flag
    assert [name for name, value in config["featureStates"].items() if value] == []


async def test_organization_gates_open_only_what_works(alice: BitwardenClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Members get premium features from an organization only when premium exists; TOTP codes
    (made by the clients) may show, which also keeps the organization from looking like a free one."""
    made = await alice.create_organization()
    [entry] = (await alice.sync())["profile"]["organizations"]
    assert (entry["usersGetPremium"], entry["useTotp"], made["useTotp"]) == (False, True, True)
    assert not any(entry[gate] for gate in ("useGroups", "usePolicies", "useEvents", "useSso", "useApi",
                                             "useResetPassword", "useSecretsManager", "use2fa", "useScim"))
    monkeypatch.setattr(capabilities, "PREMIUM", True)
    assert (await alice.sync())["profile"]["organizations"][0]["usersGetPremium"] is True
