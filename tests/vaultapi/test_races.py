"""Two devices of one user writing at once: the vault stays consistent whatever the interleaving.

The interleavings are forced with row locks taken from a plain SQL session, not with sleeps: a
request is held at a known statement until the test lets it go.
"""

from __future__ import annotations

import asyncio

import asyncpg

from tests.support.bwclient import BitwardenClient


async def _waiting_on_locks(db: asyncpg.Connection, count: int, unless: asyncio.Task | None = None) -> None:
    """Return once `count` other sessions are blocked waiting for a lock (or `unless` is done)."""
    while (unless is None or not unless.done()) and await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            " AND pid <> pg_backend_pid()") < count:
        await asyncio.sleep(0.01)


async def test_folder_deleted_while_an_item_moves_into_it_leaves_the_item_folderless(
        alice: BitwardenClient, new_client, db, database_url: str) -> None:
    other_device = new_client()
    await other_device.login(alice.email, alice.password)
    for move in (
        lambda item, folder: alice.put(f"/api/ciphers/{item}/partial", {"folderId": folder, "favorite": False}),
        lambda item, folder: alice.put("/api/ciphers/move", {"ids": [item], "folderId": folder}),
        lambda item, folder: alice.put(f"/api/ciphers/{item}", alice.login_item("edited", folder_id=folder)),
    ):
        folder = (await alice.post("/api/folders", {"name": alice.encrypt("doomed")})).json()["id"]
        item = (await alice.post("/api/ciphers", alice.login_item("moving"))).json()["id"]
        holder = await asyncpg.connect(database_url)
        try:
            # hold the item, so the move stops after it has checked the folder and before it writes
            async with holder.transaction():
                await holder.execute("SELECT 1 FROM ciphers WHERE id = $1 FOR UPDATE", item)
                moving = asyncio.create_task(move(item, folder))
                await asyncio.wait_for(_waiting_on_locks(db, 1), 10)
                deleting = asyncio.create_task(other_device.delete(f"/api/folders/{folder}"))
                # the delete either waits for the move or is done before the move may go on
                await asyncio.wait_for(_waiting_on_locks(db, 2, unless=deleting), 10)
        finally:
            await holder.close()
        moved = await moving
        # a move that checks the folder only after the wait finds it gone, and says so
        assert moved.status_code == 200 or moved.json()["validationErrors"] == {"folderId": ["Invalid folder."]}
        assert (await deleting).status_code == 200
        assert (await alice.get(f"/api/folders/{folder}")).status_code == 404
        assert (await alice.get(f"/api/ciphers/{item}")).json()["folderId"] is None
