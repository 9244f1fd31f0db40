"""Sync, settings (equivalent domains), config, health and negotiation."""

from __future__ import annotations

import httpx

from tests.support.bwclient import BitwardenClient
from tests.vaultapi.conftest import PASSWORD, assert_event, running_api, user_id_of


async def test_sync_has_every_key_the_clients_read(alice: BitwardenClient, bob: BitwardenClient, events) -> None:
    folder = (await alice.post("/api/folders", {"name": alice.encrypt("F")})).json()
    item = (await alice.post("/api/ciphers", alice.login_item("I", folder_id=folder["id"]))).json()
    await bob.post("/api/folders", {"name": bob.encrypt("bob's")})
    sync = (await alice.get("/api/sync")).json()
    assert sync["object"] == "sync"
    profile = sync["profile"]
    for key in ("id", "name", "email", "emailVerified", "premium", "culture", "twoFactorEnabled", "key",
                "privateKey", "accountKeys", "securityStamp", "forcePasswordReset", "usesKeyConnector",
                "avatarColor", "creationDate", "organizations", "providers", "providerOrganizations"):
        assert key in profile, key
    assert profile["object"] == "profile"
    assert profile["accountKeys"]["publicKeyEncryptionKeyPair"]["wrappedPrivateKey"] == profile["privateKey"]
    assert sync["folders"] == [folder]
    assert sync["ciphers"] == [item]
    assert sync["collections"] == [] and sync["policies"] == [] and sync["sends"] == []
    assert sync["domains"]["object"] == "domains"
    unlock = sync["userDecryption"]["masterPasswordUnlock"]
    assert unlock["kdf"]["kdfType"] == 0 and unlock["masterKeyWrappedUserKey"] == profile["key"]
    assert unlock["salt"] == "alice@example.com"
    assert (await alice.get("/api/sync?excludeDomains=true")).json()["domains"] is None


async def test_domains_saved_publish_sync_settings(alice: BitwardenClient, bob: BitwardenClient, events) -> None:
    me = await user_id_of(alice)
    groups = [["example.com", "example.org"]]
    reply = await alice.put("/api/settings/domains", {"equivalentDomains": groups,
                                                      "excludedGlobalEquivalentDomains": [2]})
    assert reply.status_code == 200 and reply.json()["equivalentDomains"] == groups
    assert_event((await events.exactly(1))[0], 10, me, None, alice.device)
    assert (await alice.get("/api/settings/domains")).json()["equivalentDomains"] == groups
    assert (await alice.get("/api/sync")).json()["domains"]["equivalentDomains"] == groups
    assert (await bob.get("/api/settings/domains")).json()["equivalentDomains"] == []
    await alice.post("/api/settings/domains", {"equivalentDomains": []})
    assert_event((await events.exactly(1))[0], 10, me, None, alice.device)
    for bad in ({"equivalentDomains": "x"}, {"equivalentDomains": [[1]]},
                {"excludedGlobalEquivalentDomains": ["a"]}):
        assert (await alice.put("/api/settings/domains", bad)).status_code == 400
    await events.nothing()


async def test_config_and_alive(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        config = (await http.get("/api/config")).json()
        assert config["object"] == "config" and config["version"]
        assert config["environment"]["api"] == "https://vault.test/api"
        assert config["environment"]["notifications"] == "https://vault.test/notifications"
        assert config["featureStates"] == {}
        assert config["push"] == {"pushTechnology": 0, "vapidPublicKey": None}
        assert config["settings"] == {"disableUserRegistration": False}
        alive = await http.get("/alive")
        assert alive.status_code == 200 and alive.json().endswith("Z")
        unknown = await http.get("/api/nothing-here")
        assert unknown.status_code == 404 and unknown.json()["object"] == "error"
        wrong_method = await http.delete("/api/config")
        assert wrong_method.status_code == 405 and wrong_method.json()["object"] == "error"


async def test_negotiate_follows_websocket_enabled(database_url: str, alice: BitwardenClient) -> None:
    reply = await alice.post("/notifications/hub/negotiate")
    assert reply.status_code == 200
    assert reply.json()["connectionId"]
    assert reply.json()["availableTransports"] == [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]
    assert (await alice.http.post("/notifications/hub/negotiate")).status_code == 401
    async with running_api(database_url, websocket_enabled=False) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            off = await http.post("/notifications/hub/negotiate", headers=alice.auth_headers)
            assert off.status_code == 200 and off.json()["availableTransports"] == []


async def test_two_instances_accept_each_others_tokens(database_url: str) -> None:
    async with running_api(database_url) as first, running_api(database_url) as second:
        async with BitwardenClient(first) as one, BitwardenClient(second) as other:
            await one.register("frank@example.com", PASSWORD)
            await one.login()
            folder = await one.post("/api/folders", {"name": one.encrypt("made on one")})
            other.email, other.password, other.iterations = one.email, one.password, one.iterations
            other.tokens, other.user_key = one.tokens, one.user_key
            seen = (await other.get("/api/sync")).json()["folders"]
            assert [f["id"] for f in seen] == [folder.json()["id"]]
            refreshed = await other.refresh()
            assert refreshed.status_code == 200
            assert (await one.get("/api/sync", headers={
                "Authorization": f"Bearer {refreshed.json()['access_token']}"})).status_code == 200
