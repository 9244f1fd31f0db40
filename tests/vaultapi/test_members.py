"""Members: invitations without mail, the member list, confirming with the organization key,
roles and who may change them, revoking, restoring, removing, and the events each publishes."""

from __future__ import annotations

import uuid

import asyncpg

from db.events import PushType
from tests.support.bwclient import BitwardenClient
from tests.support.organizations import ADMIN, CUSTOM, OWNER, USER, Organization, grant
from tests.support.vaultstate import assert_error_shape
from tests.vaultapi.conftest import assert_event, user_id_of

#: OrganizationUserUserDetailsResponseModel as pgwarden fills it
LIST_KEYS = {"id", "userId", "type", "status", "externalId", "accessSecretsManager", "accessPam",
             "resetPasswordEnrolled", "usesKeyConnector", "hasMasterPassword", "name", "email", "avatarColor",
             "twoFactorEnabled", "ssoBound", "claimedByOrganization", "collections", "groups", "revocationReason",
             "creationDate", "object"}
DETAILS_KEYS = {"id", "userId", "type", "status", "externalId", "accessSecretsManager", "accessPam",
                "resetPasswordEnrolled", "usesKeyConnector", "hasMasterPassword", "claimedByOrganization",
                "ssoExternalId", "collections", "groups", "creationDate", "object"}


def invitation(*emails: str, member_type: int = USER, **extra) -> dict:
    return {"emails": list(emails), "type": member_type, "collections": [], "groups": [], "permissions": {},
            "accessSecretsManager": False, **extra}


async def test_invite_accepts_accounts_at_once_and_lists_them(alice: BitwardenClient, bob: BitwardenClient,
                                                              events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await events.exactly(1)
    reply = await alice.post(f"{org.path}/users/invite", invitation(
        " Bob@Example.com", "new@example.com", "bob@example.com",
        collections=[grant(org.default_collection, read_only=True)]))
    assert reply.status_code == 200 and reply.content == b""
    await events.nothing()  # nobody has anything to sync before being confirmed
    # again: the addresses already in the organization are left alone
    assert (await alice.post(f"{org.path}/users/invite", invitation("bob@example.com"))).status_code == 200
    listed = {m["email"]: m for m in (await alice.get(f"{org.path}/users")).json()["data"]}
    assert set(listed) == {"alice@example.com", "bob@example.com", "new@example.com"}
    bob_entry = listed["bob@example.com"]
    assert set(bob_entry) == LIST_KEYS and bob_entry["object"] == "organizationUserUserDetails"
    assert (bob_entry["userId"], bob_entry["status"], bob_entry["type"], bob_entry["name"]) == (
        await user_id_of(bob), 1, USER, "Bob")
    assert bob_entry["collections"] == [grant(org.default_collection, read_only=True)]
    assert (listed["new@example.com"]["status"], listed["new@example.com"]["userId"]) == (0, None)
    assert (listed["alice@example.com"]["status"], listed["alice@example.com"]["type"]) == (2, OWNER)
    assert await db.fetchval("SELECT count(*) FROM memberships") == 3
    # the CLI asks for one member with an empty query string
    details = await alice.get(f"{org.path}/users/{bob_entry['id']}?")
    assert set(details.json()) == DETAILS_KEYS and details.json()["object"] == "organizationUserDetails"
    assert details.json()["collections"] == bob_entry["collections"]
    # accepted is not a member yet: no organization in bob's profile
    assert (await bob.sync())["profile"]["organizations"] == []


async def test_invitations_refused(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient,
                                   events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.add(bob, ADMIN)
    await org.add(carol, USER, [grant(org.default_collection, manage=True)])
    await events.exactly(3)
    before = await db.fetchval("SELECT count(*) FROM memberships")
    for body, status in (
        (invitation(), 400), (invitation("no-at-sign"), 400), (invitation("a b@example.com"), 400),
        (invitation(*[f"u{i}@example.com" for i in range(21)]), 400), (invitation(7), 400),
        (invitation("x@example.com", member_type=3), 400), (invitation("x@example.com", member_type=None), 400),
        (invitation("x@example.com", collections=[grant(str(uuid.uuid4()))]), 400),
        (invitation("x@example.com", collections=[grant(org.default_collection, read_only=True, manage=True)]), 400),
        ({"emails": "x@example.com", "type": USER}, 400),
    ):
        reply = await alice.post(f"{org.path}/users/invite", body)
        assert reply.status_code == status, (body, reply.text)
        assert_error_shape(reply)
    # an Admin may not invite an Owner; a User may not invite at all
    assert (await bob.post(f"{org.path}/users/invite", invitation("x@example.com", member_type=OWNER))).status_code == 400
    assert (await carol.post(f"{org.path}/users/invite", invitation("x@example.com"))).status_code == 404
    assert (await carol.get(f"{org.path}/users")).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM memberships") == before
    await events.nothing()


async def test_confirm_gives_the_key_and_publishes_sync_org_keys(alice: BitwardenClient, bob: BitwardenClient,
                                                                 carol: BitwardenClient, events) -> None:
    org = await Organization.create(alice)
    item = await org.item("Shared", [org.default_collection])
    membership = await org.invite(bob.email, USER, [grant(org.default_collection)])
    await events.exactly(2)
    assert (await bob.sync())["ciphers"] == []  # accepted reaches nothing

    assert (await alice.confirm_member(org.id, membership)).status_code == 200
    assert_event((await events.exactly(1))[0], PushType.SYNC_ORG_KEYS, await user_id_of(bob), None, alice.device)
    sync = await bob.sync()
    assert bob.org_keys[org.id] == alice.org_keys[org.id]
    [shared] = sync["ciphers"]
    assert shared["id"] == item["id"] and bob.org_decrypt(org.id, shared["name"]) == "Shared"
    again = await alice.post(f"{org.path}/users/{membership}/confirm", {"key": "4.a2V5"})
    assert again.status_code == 400 and again.json()["message"] == "User already confirmed."
    missing_key = await alice.post(f"{org.path}/users/{membership}/confirm", {})
    assert missing_key.status_code == 400
    # another organization's member is unknown here
    other = await Organization.create(carol)
    await events.exactly(1)
    assert (await carol.post(f"{other.path}/users/{membership}/confirm", {"key": "4.a2V5"})).status_code == 404
    await events.nothing()


async def test_bulk_confirm_with_public_keys(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient,
                                             events) -> None:
    org = await Organization.create(alice)
    ids = [await org.invite(client.email) for client in (bob, carol)]
    invited = await org.invite("nobody@example.com")
    await events.exactly(1)
    keys = (await alice.post(f"{org.path}/users/public-keys", {"ids": [*ids, invited]})).json()["data"]
    assert {k["id"] for k in keys} == set(ids)  # the invitation without account has no key
    assert {k["object"] for k in keys} == {"organizationUserPublicKeyResponseModel"}
    from vaultapi.clientcrypto import wrap_key

    body = {"keys": [{"id": k["id"], "key": wrap_key(k["key"], alice.org_keys[org.id])} for k in keys]
            + [{"id": invited, "key": "4.a2V5"}, {"id": str(uuid.uuid4()), "key": "4.a2V5"}],
            "defaultUserCollectionName": alice.org_encrypt(org.id, "My items")}
    results = (await alice.post(f"{org.path}/users/confirm", body)).json()["data"]
    errors = {r["id"]: r["error"] for r in results}
    assert errors[ids[0]] == errors[ids[1]] == "" and errors[invited] and len(errors) == 4
    received = await events.exactly(2)
    assert {e.user_id for e in received} == {await user_id_of(bob), await user_id_of(carol)}
    assert {e.type for e in received} == {PushType.SYNC_ORG_KEYS}
    assert [o["id"] for o in (await carol.sync())["profile"]["organizations"]] == [org.id]


async def test_public_key_only_for_oneself_and_those_who_manage_one(alice: BitwardenClient, bob: BitwardenClient,
                                                                    carol: BitwardenClient) -> None:
    org = await Organization.create(alice)
    await org.add(carol, USER)
    bob_id, alice_id = await user_id_of(bob), await user_id_of(alice)
    assert (await bob.get(f"/api/users/{bob_id}/public-key")).json()["object"] == "userKey"
    assert (await alice.get(f"/api/users/{bob_id}/public-key")).status_code == 404  # not in her organization
    await org.invite(bob.email)  # now it is: she confirms with it
    reply = (await alice.get(f"/api/users/{bob_id}/public-key")).json()
    assert reply == {"userId": bob_id, "publicKey": bob.tokens["AccountKeys"]["publicKeyEncryptionKeyPair"]["publicKey"],
                     "object": "userKey"}
    # a plain member manages no one
    assert (await carol.get(f"/api/users/{bob_id}/public-key")).status_code == 404
    assert (await carol.get(f"/api/users/{alice_id}/public-key")).status_code == 404
    assert (await alice.get(f"/api/users/{uuid.uuid4()}/public-key")).status_code == 404


async def test_edit_roles_and_collections(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient,
                                          events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    second = await org.collection("Second")
    bob_membership = await org.add(bob, ADMIN)
    carol_membership = await org.add(carol, USER, [grant(org.default_collection, read_only=True)])
    await events.exactly(3)
    carol_id = await user_id_of(carol)
    path = f"{org.path}/users/{carol_membership}"

    # collections null: as they were
    assert (await bob.put(path, {"type": USER, "collections": None, "groups": [], "permissions": {}})).status_code == 200
    assert (await alice.get(path)).json()["collections"] == [grant(org.default_collection, read_only=True)]
    # a list replaces them; the member's devices sync
    edited = await bob.put(path, {"type": USER, "collections": [grant(second, hide_passwords=True)], "groups": []})
    assert edited.status_code == 200
    assert_event((await events.exactly(1))[0], PushType.SYNC_VAULT, carol_id, None, bob.device)
    assert (await alice.get(path)).json()["collections"] == [grant(second, hide_passwords=True)]
    assert [c["id"] for c in (await carol.sync())["collections"]] == [second]

    # an Admin may not make an Owner, nor touch one
    assert (await bob.put(path, {"type": OWNER})).status_code == 400
    alice_path = f"{org.path}/users/{org.members[alice.email]}"
    assert (await bob.put(alice_path, {"type": USER})).status_code == 404
    # the last confirmed owner stays one
    demoted = await alice.put(alice_path, {"type": ADMIN})
    assert demoted.status_code == 400 and "owner" in demoted.json()["message"]
    assert (await alice.put(f"{org.path}/users/{bob_membership}", {"type": OWNER})).status_code == 200
    assert (await alice.put(alice_path, {"type": ADMIN})).status_code == 200
    await events.exactly(2)
    types = dict(await db.fetch("SELECT user_id::text, type FROM memberships"))
    assert types == {await user_id_of(alice): ADMIN, await user_id_of(bob): OWNER, carol_id: USER}
    for spoilt in ({"type": 3}, {"type": "2"}, {"type": USER, "collections": [grant(str(uuid.uuid4()))]},
                   {"type": USER, "collections": "x"}, {}):
        reply = await bob.put(path, spoilt)
        assert reply.status_code == 400, spoilt
        assert_error_shape(reply)
    await events.nothing()


async def test_custom_permissions(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient,
                                  new_client, events) -> None:
    org = await Organization.create(alice)
    hidden = await org.collection("Hidden")
    item = await org.item("In hidden", [hidden])
    await org.add(bob, CUSTOM, permissions={"manageUsers": True, "editAnyCollection": True, "response": {"x": 1}})
    await events.exactly(3)
    entry = (await bob.sync())["profile"]["organizations"][0]
    assert entry["type"] == CUSTOM and entry["permissions"]["manageUsers"] is True
    assert entry["permissions"]["deleteAnyCollection"] is False and "response" not in entry["permissions"]
    # editAnyCollection reaches every item; manageUsers invites Users, nobody else
    assert [c["id"] for c in (await bob.sync())["ciphers"]] == [item["id"]]
    assert (await bob.post(f"{org.path}/users/invite", invitation(carol.email, member_type=ADMIN))).status_code == 400
    assert (await bob.post(f"{org.path}/users/invite", invitation(carol.email))).status_code == 200
    assert (await bob.delete(f"{org.path}/users/{org.members[alice.email]}")).status_code == 404
    # not deleteAnyCollection, not createNewCollections
    assert (await bob.delete(f"{org.path}/collections/{hidden}")).status_code == 404
    created = await bob.post(f"{org.path}/collections", {"name": bob.org_encrypt(org.id, "x"), "users": []})
    assert created.status_code == 404
    await events.nothing()


async def test_revoke_and_restore(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient,
                                  events, db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    await org.item("Shared", [org.default_collection])
    membership = await org.add(bob, USER, [grant(org.default_collection)])
    await org.add(carol, ADMIN)
    await events.exactly(4)
    bob_id = await user_id_of(bob)
    assert len((await bob.sync())["ciphers"]) == 1

    assert (await carol.put(f"{org.path}/users/{membership}/revoke")).status_code == 200
    assert_event((await events.exactly(1))[0], PushType.SYNC_ORG_KEYS, bob_id, None, carol.device)
    assert await db.fetchval("SELECT (status, status_before_revoke)::text FROM memberships WHERE id = $1",
                             uuid.UUID(membership)) == "(-1,2)"
    sync = (await bob.get("/api/sync")).json()
    assert (sync["profile"]["organizations"], sync["collections"], sync["ciphers"]) == ([], [], [])
    assert (await bob.get(f"{org.path}/keys")).status_code == 404
    again = await carol.put(f"{org.path}/users/{membership}/revoke")
    assert again.status_code == 400

    assert (await carol.put(f"{org.path}/users/{membership}/restore/vnext",
                            {"defaultUserCollectionName": None})).status_code == 200
    assert_event((await events.exactly(1))[0], PushType.SYNC_ORG_KEYS, bob_id, None, carol.device)
    assert len((await bob.sync())["ciphers"]) == 1
    assert (await carol.put(f"{org.path}/users/{membership}/restore")).status_code == 400

    # nobody revokes themselves, an Admin no Owner; the bulk form says so per member
    own = org.members[carol.email]
    results = (await carol.put(f"{org.path}/users/revoke", {"ids": [membership, own, org.members[alice.email]]})).json()
    errors = {r["id"]: r["error"] for r in results["data"]}
    assert errors[membership] == "" and errors[own] == "You cannot revoke yourself." and errors[org.members[alice.email]]
    await events.exactly(1)
    results = (await carol.put(f"{org.path}/users/restore", {"ids": [membership]})).json()
    assert [r["error"] for r in results["data"]] == [""]
    await events.exactly(1)
    # the last owner cannot be revoked by the other owner... there is none: alice may not revoke herself
    assert (await alice.put(f"{org.path}/users/{org.members[alice.email]}/revoke")).status_code == 400


async def test_remove(alice: BitwardenClient, bob: BitwardenClient, carol: BitwardenClient, events,
                      db: asyncpg.Connection) -> None:
    org = await Organization.create(alice)
    bob_membership = await org.add(bob, USER, [grant(org.default_collection)])
    carol_membership = await org.add(carol, USER)
    invited = await org.invite("nobody@example.com")
    await events.exactly(3)
    assert (await alice.delete(f"{org.path}/users/{bob_membership}")).status_code == 200
    assert_event((await events.exactly(1))[0], PushType.SYNC_ORG_KEYS, await user_id_of(bob), None, alice.device)
    assert await db.fetchval("SELECT count(*) FROM collection_members") == 0
    assert (await bob.sync())["profile"]["organizations"] == []
    assert (await alice.post(f"{org.path}/users/{carol_membership}/remove")).status_code == 200
    await events.exactly(1)
    results = (await alice.delete(f"{org.path}/users", {"ids": [invited, org.members[alice.email]]})).json()["data"]
    assert [r["error"] for r in results] == ["", "You cannot remove yourself."]
    await events.nothing()  # an invitation without account has no devices
    assert await db.fetchval("SELECT count(*) FROM memberships") == 1
    assert (await alice.delete(f"{org.path}/users/{bob_membership}")).status_code == 404


async def test_mini_details_for_those_who_give_collections(alice: BitwardenClient, bob: BitwardenClient,
                                                           carol: BitwardenClient, new_client) -> None:
    org = await Organization.create(alice)
    managed = await org.collection("Managed")
    await org.add(bob, USER, [grant(managed, manage=True)])
    await org.add(carol, USER, [grant(org.default_collection)])
    await org.invite("someone@example.com", USER)
    path = f"{org.path}/users/mini-details"
    for client in (alice, bob):
        reply = await client.get(path)
        assert reply.status_code == 200, reply.text
        listed = reply.json()["data"]
        assert {m["email"] for m in listed} == {alice.email, bob.email, carol.email, "someone@example.com"}
        assert set(listed[0]) == {"id", "userId", "type", "status", "name", "email", "object"}
        assert {m["object"] for m in listed} == {"organizationUserUserMiniDetails"}
    # a member who manages nothing, and an outsider, learn nothing
    assert (await carol.get(path)).status_code == 404
    outsider = new_client()
    await outsider.register("outsider@example.com", "outsider's password")
    await outsider.login()
    assert (await outsider.get(path)).status_code == 404
