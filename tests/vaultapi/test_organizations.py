"""Organizations: creating one, its two wire shapes, its keys, renaming, deleting, leaving, and
what the profile and sync say of it."""

from __future__ import annotations

import uuid

import asyncpg

from db.events import PushType
from tests.support.bwclient import BitwardenClient
from tests.support.organizations import ADMIN, OWNER, USER, Organization
from tests.support.vaultstate import assert_error_shape
from tests.vaultapi.conftest import PASSWORD, assert_event, registered, user_id_of
from vaultapi.clientcrypto import unwrap_key

#: ProfileOrganizationResponseModel: every key the clients read (tmp notes section 2.2)
PROFILE_KEYS = {
    "id", "userId", "organizationUserId", "name", "enabled", "identifier", "productTierType", "status", "type",
    "permissions", "key", "hasPublicAndPrivateKeys", "seats", "maxCollections", "maxStorageGb", "usePolicies",
    "useSso", "useKeyConnector", "useScim", "useGroups", "useDirectory", "useEvents", "useTotp", "use2fa", "useApi",
    "useResetPassword", "useSecretsManager", "usePasswordManager", "usersGetPremium", "useCustomPermissions",
    "useActivateAutofillPolicy", "useRiskInsights", "useOrganizationDomains", "useAdminSponsoredFamilies",
    "useAutomaticUserConfirmation", "useDisableSMAdsForUsers", "usePhishingBlocker", "useMyItems", "useInviteLinks",
    "usePam", "selfHost", "ssoBound", "resetPasswordEnrolled", "ssoEnabled", "keyConnectorEnabled", "keyConnectorUrl",
    "ssoMemberDecryptionType", "limitCollectionCreation", "limitCollectionDeletion", "limitItemDeletion",
    "allowAdminAccessToAllCollectionItems", "providerId", "providerName", "providerType", "accessSecretsManager",
    "accessPam", "userIsClaimedByOrganization", "familySponsorshipFriendlyName", "familySponsorshipAvailable",
    "familySponsorshipLastSyncDate", "familySponsorshipValidUntil", "familySponsorshipToDelete", "isAdminInitiated",
    "object",
}
#: OrganizationResponseModel: what the clients read of the organization's own reply
ORGANIZATION_KEYS = {
    "id", "name", "businessName", "businessAddress1", "businessAddress2", "businessAddress3", "businessCountry",
    "businessTaxNumber", "billingEmail", "plan", "planType", "seats", "maxAutoscaleSeats", "maxCollections",
    "maxStorageGb", "useGroups", "useDirectory", "useEvents", "useTotp", "use2fa", "useApi", "useResetPassword",
    "useSecretsManager", "hasPublicAndPrivateKeys", "usePasswordManager", "usePam", "smSeats", "smServiceAccounts",
    "maxAutoscaleSmSeats", "maxAutoscaleSmServiceAccounts", "limitCollectionCreation", "limitCollectionDeletion",
    "limitItemDeletion", "allowAdminAccessToAllCollectionItems", "useDisableSMAdsForUsers", "useRiskInsights",
    "usePhishingBlocker", "useMyItems", "useInviteLinks", "object",
}
#: the gates of features that work; every other use* flag is off
# usersGetPremium: members get premium, which pgwarden serves (attachments, file Sends)
WORKING_FEATURES = {"useTotp", "usePasswordManager", "useCustomPermissions", "usersGetPremium"}


async def test_create_makes_the_caller_its_confirmed_owner(alice: BitwardenClient, events, db) -> None:
    me = await user_id_of(alice)
    made = await alice.create_organization("Acme")
    assert ORGANIZATION_KEYS <= set(made) and made["object"] == "organization"
    assert (made["name"], made["billingEmail"], made["planType"], made["hasPublicAndPrivateKeys"]) == (
        "Acme", alice.email, 6, True)
    assert_event((await events.exactly(1))[0], PushType.SYNC_ORG_KEYS, me, None, alice.device)

    sync = await alice.sync()  # opens the key the profile carries, wrapped to alice's public key
    [entry] = sync["profile"]["organizations"]
    assert set(entry) == PROFILE_KEYS and entry["object"] == "profileOrganization"
    assert (entry["id"], entry["userId"], entry["type"], entry["status"], entry["enabled"]) == (
        made["id"], me, OWNER, 2, True)
    assert (entry["productTierType"], entry["seats"], entry["usersGetPremium"]) == (3, 20, True)
    assert {key for key, value in entry.items() if key.startswith("use") and value is True} == WORKING_FEATURES
    row = await db.fetchrow("SELECT * FROM memberships WHERE id = $1", uuid.UUID(entry["organizationUserId"]))
    assert (str(row["user_id"]), row["type"], row["status"], row["key"]) == (me, 0, 2, entry["key"])

    [collection] = sync["collections"]
    assert collection["object"] == "collectionDetails" and collection["organizationId"] == made["id"]
    assert alice.org_decrypt(made["id"], collection["name"]) == "Default collection"
    assert (collection["readOnly"], collection["hidePasswords"], collection["manage"]) == (False, False, True)
    assert (await alice.get("/api/accounts/profile")).json()["organizations"] == [entry]
    assert (await alice.get("/api/collections")).json()["data"] == [collection]
    await events.nothing()


async def test_create_refuses_what_bitwarden_refuses_and_writes_nothing(alice: BitwardenClient, events, db) -> None:
    good = {"name": "Acme", "billingEmail": "billing@example.com", "key": "4.a2V5",
            "keys": {"publicKey": "cHVi", "encryptedPrivateKey": "2.a|b|c"}, "collectionName": "2.a|b|c"}
    for spoilt in ({"name": None}, {"name": "x" * 51}, {"name": "  "}, {"billingEmail": "not an address"},
                   {"billingEmail": "x@" + "y" * 300}, {"key": None}, {"keys": None},
                   {"keys": {"publicKey": "cHVi"}}, {"collectionName": "2." + "x" * 1000}, {"name": 7}):
        reply = await alice.post("/api/organizations", {**good, **spoilt})
        assert reply.status_code == 400, (spoilt, reply.text)
        assert_error_shape(reply)
    assert await db.fetchval("SELECT count(*) FROM organizations") == 0
    oversized = await alice.post("/api/organizations", {**good, "padding": "x" * (1024 * 1024)})
    assert oversized.status_code == 413
    await events.nothing()
    # no collection name: an organization without collections
    made = await alice.post("/api/organizations", {**good, "collectionName": None})
    assert made.status_code == 200
    assert await db.fetchval("SELECT count(*) FROM collections") == 0


async def test_only_owners_read_and_rename_the_organization(alice: BitwardenClient, bob: BitwardenClient,
                                                            carol: BitwardenClient, events) -> None:
    org = await Organization.create(alice)
    await org.add(bob, ADMIN)
    await org.add(carol, USER)
    got = await alice.get(org.path)
    assert got.status_code == 200 and set(got.json()) >= ORGANIZATION_KEYS
    for client in (bob, carol):
        for method in ("GET", "PUT", "POST"):
            reply = await client.call(method, org.path, {"name": "Mine", "billingEmail": client.email})
            assert reply.status_code == 404, (client.email, method)
            assert_error_shape(reply)
    await events.exactly(3)  # the members' SyncOrgKeys
    renamed = await alice.put(org.path, {"name": "Acme Ltd", "billingEmail": "ap@example.com",
                                         "keys": {"publicKey": "bmV3", "encryptedPrivateKey": "2.a|b|c"}})
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["billingEmail"]) == ("Acme Ltd", "ap@example.com")
    # every confirmed member's devices are told, the acting one named, and only on a new name
    told = await events.exactly(3)
    assert {(e.type, e.user_id, e.device_identifier) for e in told} == {
        (PushType.SYNC_ORGANIZATIONS, await user_id_of(client), alice.device) for client in (alice, bob, carol)}
    again = await alice.put(org.path, {"name": "Acme Ltd", "billingEmail": "billing@example.com"})
    assert again.status_code == 200
    await events.exactly(0)
    # an organization keeps its first key pair
    assert (await carol.get(f"{org.path}/keys")).json()["publicKey"] != "bmV3"
    assert [o["name"] for o in (await bob.sync())["profile"]["organizations"]] == ["Acme Ltd"]
    assert (await alice.get(f"/api/organizations/{uuid.uuid4()}")).status_code == 404


async def test_keys_are_read_by_members_and_set_once(alice: BitwardenClient, bob: BitwardenClient,
                                                     carol: BitwardenClient, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER)
    keys = (await bob.get(f"{org.path}/keys")).json()
    assert keys["object"] == "organizationKeys" and keys["publicKey"]
    # the private key is wrapped by the organization key, which a member opens from the profile
    assert bob.org_keys[org.id].decrypt(keys["privateKey"])
    assert (await carol.get(f"{org.path}/keys")).status_code == 404
    pair = {"publicKey": "bmV3", "encryptedPrivateKey": "2.a|b|c"}
    assert (await alice.post(f"{org.path}/keys", pair)).status_code == 400
    await db.execute("UPDATE organizations SET public_key = NULL, private_key = NULL")
    assert (await bob.post(f"{org.path}/keys", pair)).status_code == 404  # a User may not
    assert (await alice.post(f"{org.path}/keys", pair)).json() == {
        "publicKey": "bmV3", "privateKey": "2.a|b|c", "object": "organizationKeys"}


async def test_delete_needs_the_owner_and_the_master_password(alice: BitwardenClient, bob: BitwardenClient,
                                                              events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, ADMIN)
    await org.item("Shared", [org.default_collection])
    await events.exactly(3)  # create's, confirm's SyncOrgKeys, the item's
    assert (await bob.delete(org.path, {"masterPasswordHash": bob.password_hash()})).status_code == 404
    wrong = await alice.delete(org.path, {"masterPasswordHash": alice.password_hash("wrong")})
    assert wrong.status_code == 400
    await events.nothing()
    assert (await alice.delete(org.path, {"masterPasswordHash": alice.password_hash()})).status_code == 200
    received = await events.exactly(3)
    assert sorted((int(e.type), e.user_id, e.org_id) for e in received) == sorted([
        (PushType.SYNC_ORG_KEYS, await user_id_of(alice), None), (PushType.SYNC_ORG_KEYS, await user_id_of(bob), None),
        (PushType.SYNC_LOGIN_DELETE, None, org.id)])
    for table in ("organizations", "memberships", "collections", "collection_members", "ciphers"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    assert (await bob.sync())["profile"]["organizations"] == []


async def test_leaving(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, events) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER, [{"id": org.default_collection, "readOnly": True}])
    await org.item("Shared", [org.default_collection])
    await events.exactly(3)
    assert len((await bob.sync())["ciphers"]) == 1

    assert (await bob.post(f"{org.path}/leave")).status_code == 200
    assert_event((await events.exactly(1))[0], PushType.SYNC_ORG_KEYS, await user_id_of(bob), None, bob.device)
    sync = await bob.sync()
    assert (sync["profile"]["organizations"], sync["collections"], sync["ciphers"]) == ([], [], [])
    assert (await bob.post(f"{org.path}/leave")).status_code == 404
    assert (await carol.post(f"{org.path}/leave")).status_code == 404

    refused = await alice.post(f"{org.path}/leave")
    assert refused.status_code == 400 and "owner" in refused.json()["message"]
    await org.add(carol, OWNER)
    await events.exactly(1)
    assert (await alice.post(f"{org.path}/leave")).status_code == 200
    assert (await carol.sync())["profile"]["organizations"][0]["type"] == OWNER


async def test_groups_and_policies_are_empty_for_members(alice: BitwardenClient, bob: BitwardenClient) -> None:
    org = await Organization.create(alice)
    for path in ("groups", "policies"):
        assert (await alice.get(f"{org.path}/{path}")).json() == {"data": [], "object": "list",
                                                                   "continuationToken": None}
        assert (await bob.get(f"{org.path}/{path}")).status_code == 404


async def test_an_invited_address_takes_its_place_when_it_registers(alice: BitwardenClient, new_client,
                                                                    db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    invited = await org.invite("Dave@Example.com", USER, [{"id": org.default_collection, "readOnly": False}])
    [listed] = [m for m in (await alice.get(f"{org.path}/users")).json()["data"] if m["id"] == invited]
    assert (listed["email"], listed["userId"], listed["status"]) == ("dave@example.com", None, 0)
    # no account yet: nothing to confirm, no public key to wrap the organization key to
    early = await alice.post(f"{org.path}/users/{invited}/confirm", {"key": "4.a2V5"})
    assert early.status_code == 400 and "accept" in early.json()["message"]

    dave = await registered(new_client, "dave@example.com", "Dave")
    [listed] = [m for m in (await alice.get(f"{org.path}/users")).json()["data"] if m["id"] == invited]
    assert (listed["email"], listed["userId"], listed["status"]) == ("dave@example.com", await user_id_of(dave), 1)
    assert (await alice.confirm_member(org.id, invited)).status_code == 200
    item = await org.item("For Dave", [org.default_collection])
    sync = await dave.sync()
    assert [o["id"] for o in sync["profile"]["organizations"]] == [org.id]
    assert [dave.org_decrypt(org.id, c["name"]) for c in sync["ciphers"]] == ["For Dave"]
    assert sync["ciphers"][0]["id"] == item["id"]
    assert await db.fetchval("SELECT email FROM memberships WHERE id = $1", uuid.UUID(invited)) is None


async def test_the_wrapped_key_opens_with_the_members_own_private_key(alice: BitwardenClient,
                                                                        bob: BitwardenClient) -> None:
    org = await Organization.create(alice)
    await org.add(bob, USER)
    entry = (await bob.get("/api/sync")).json()["profile"]["organizations"][0]
    assert entry["key"].startswith("4.")
    assert unwrap_key(bob.private_key, entry["key"]) == alice.org_keys[org.id]
    # the master password stays the only way in: a fresh login opens the same key
    fresh = BitwardenClient(bob.base_url)
    try:
        await fresh.login(bob.email, PASSWORD)
        assert unwrap_key(fresh.private_key, entry["key"]) == alice.org_keys[org.id]
    finally:
        await fresh.aclose()
