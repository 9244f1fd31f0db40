"""Who of the users connected to this hub reaches what in organizations: the routing of
organization events.

An organization's event names no user: its payload carries the organization and the collections
that decide who reaches the item (db/events.py). The hub holds, for each user with a connection
here and no one else, that user's grants from the ``member_access`` view: per organization,
every item (Owners, Admins, access-all) or a set of collections. Indexed by organization and by
collection, an event's recipients are found in O(recipients), whatever the organization's size.

A user's grants are loaded when the user's first connection registers, dropped when the last one
leaves, and loaded again when one of the user's own events says they may have changed
(:data:`SIGNALS`: the API publishes SyncOrgKeys or SyncVault to every member whose reach changes,
vaultapi/publish.py). From that event on the user is out of the indexes, so a removed or revoked
member hears nothing more of the organization, without reconnecting.

While a user's grants load, organization events are kept in a log; once loaded, those that
arrived since the user became unroutable are routed to the user alone, with the new grants: none
is lost, and none reaches a user the new grants leave out. The log is bounded; a user whose
events it had to let go of gets a SyncVault instead (the client syncs).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from db.events import Event, PushType

__all__ = ["SIGNALS", "Grants", "Memberships", "Recipients", "load_from"]

log = logging.getLogger(__name__)

#: A user's own events that may follow a change of what the user reaches: its grants load again.
SIGNALS = frozenset({PushType.SYNC_ORG_KEYS, PushType.SYNC_VAULT, PushType.SYNC_ORGANIZATIONS})

#: Organization events kept while grants load; far more than arrive in one load's time.
MAX_LOG = 10_000

#: After a failed load, the wait before the next attempt (the users stay out of the indexes).
RETRY_DELAY = 1.0

#: A load that takes longer is given up (its connection closed: a link may die silently) and retried.
LOAD_TIMEOUT = 10.0

#: A user's reach in one organization: None, every item; else the collections granted.
Grants = dict[str, frozenset[str] | None]

#: (user id, organization id, collection id or None) rows of member_access for the users asked.
Loader = Callable[[list[str]], Awaitable[Iterable[tuple[str, str, str | None]]]]


def load_from(pool: Callable[[], asyncpg.Pool]) -> Loader:
    """The grants of the users asked, read from member_access on a connection of ``pool()``."""

    async def load(user_ids: list[str]) -> list[tuple[str, str, str | None]]:
        async with pool().acquire() as conn:
            try:
                async with asyncio.timeout(LOAD_TIMEOUT):
                    rows = await conn.fetch(
                        "SELECT user_id::text, organization_id::text, collection_id::text FROM member_access"
                        " WHERE user_id = ANY($1::uuid[])", user_ids)
            except BaseException:
                # cut off, whatever the reason: the pool must not wait for a reset on a dead link
                conn.terminate()
                raise
        return [(row[0], row[1], row[2]) for row in rows]

    return load


@dataclass(frozen=True, slots=True)
class Recipients:
    """Users who get one message: the push type they get and the CollectionIds they may know of."""

    type: PushType
    collection_ids: tuple[str, ...] | None
    users: tuple[str, ...]


class Memberships:
    def __init__(self, load: Loader, replay: Callable[[str, Event], object]) -> None:
        self._load = load
        #: Routes an event to one user; called for the events logged while the user's grants loaded.
        self._replay = replay
        self._connected: set[str] = set()
        self._grants: dict[str, Grants] = {}
        # the indexes, over loaded users only
        self._everything: dict[str, set[str]] = {}
        self._by_collection: dict[str, set[str]] = {}
        self._members: dict[str, set[str]] = {}
        # users not routable until their grants load -> the log position they became so at
        self._loading: dict[str, int] = {}
        self._queued: set[str] = set()
        self._log: deque[tuple[int, Event]] = deque()
        self._next = 0
        self._log_start = 0
        self._loader: asyncio.Task[None] | None = None

    def __contains__(self, user_id: str) -> bool:
        """True when the user's grants are loaded and routing reaches the user."""
        return user_id in self._grants

    def grants_of(self, user_id: str) -> Grants | None:
        return self._grants.get(user_id)

    # -- the registry's hooks, and the user events that signal a change ---------------------------

    def connected(self, user_id: str) -> None:
        """The user's first connection registered."""
        self._connected.add(user_id)
        self._reload(user_id)

    def disconnected(self, user_id: str) -> None:
        """The user's last connection left."""
        self._connected.discard(user_id)
        self._forget(user_id)
        self._loading.pop(user_id, None)
        self._queued.discard(user_id)

    def changed(self, user_id: str) -> None:
        """The user's reach may have changed: out of the indexes now, back once loaded again."""
        if user_id in self._connected:
            self._reload(user_id)

    async def close(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.wait([self._loader], timeout=1.0)

    # -- routing --------------------------------------------------------------------------------

    def route(self, event: Event, only: str | None = None) -> list[Recipients]:
        """Who gets what for an organization's event (to ``only``, when given, if the user is one).

        An item event goes to the members who reach the item after the change, or before it: one
        who reaches it both before and after gets the event as it is, one who gains it a
        SyncCipherCreate, one who loses it a SyncLoginDelete. Each gets the item's collections it
        may know of, or None when there are none (then a client fetches an item it has not got).
        A bulk event goes to every member who reaches any of the collections it names, or to
        every member when it names none.
        """
        org = event.org_id
        assert org is not None and event.user_id is None
        if only is None:
            self._remember(event)
        if event.item_id is None:
            users = (self._members.get(org, set()) if event.collections is None
                     else self._reaching(org, event.collections))
            if only is not None:
                users = {only} & users
            return [Recipients(event.type, None, tuple(users))] if users else []

        after_collections = event.collections or ()
        before_collections = event.moved_from if event.moved_from is not None else after_collections
        after = self._reaching(org, after_collections)
        before = after if event.moved_from is None else self._reaching(org, before_collections)
        groups: dict[tuple[PushType, tuple[str, ...] | None], list[str]] = {}
        # members with equal grants know the same collections: worked out once per grant
        known_after: dict[frozenset[str] | None, tuple[str, ...] | None] = {}
        known_before: dict[frozenset[str] | None, tuple[str, ...] | None] = {}
        for user in (after | before if only is None else {only} & (after | before)):
            granted = self._grants[user][org]
            if user in after:
                push_type = event.type if user in before else PushType.SYNC_CIPHER_CREATE
                known = _known(known_after, granted, after_collections)
            else:
                push_type, known = PushType.SYNC_LOGIN_DELETE, _known(known_before, granted, before_collections)
            groups.setdefault((push_type, known), []).append(user)
        return [Recipients(push_type, known, tuple(users)) for (push_type, known), users in groups.items()]

    def _reaching(self, org: str, collections: Iterable[str]) -> set[str]:
        users = set(self._everything.get(org, ()))
        for collection in collections:
            users.update(self._by_collection.get(collection, ()))
        return users


    # -- loading ----------------------------------------------------------------------------------

    def _reload(self, user_id: str) -> None:
        self._forget(user_id)
        # the earliest position counts: a user asked for again while loading misses nothing
        self._loading.setdefault(user_id, self._next)
        self._queued.add(user_id)
        if self._loader is None or self._loader.done():
            self._loader = asyncio.get_running_loop().create_task(self._load_queued(), name="hub-memberships")

    def _remember(self, event: Event) -> None:
        if not self._loading:
            return
        self._log.append((self._next, event))
        self._next += 1
        if len(self._log) > MAX_LOG:
            self._log_start = self._log.popleft()[0] + 1

    async def _load_queued(self) -> None:
        while self._queued:
            batch, self._queued = sorted(self._queued), set()
            try:
                rows = await self._load(batch)
            except Exception as error:  # the database is away: these users stay unroutable meanwhile
                log.warning("loading the organization grants of %d users failed (%r); retrying", len(batch), error)
                self._queued.update(user for user in batch if user in self._connected)
                await asyncio.sleep(RETRY_DELAY)
                continue
            loaded: dict[str, Grants] = {user: {} for user in batch}
            for user, org, collection in rows:
                grants = loaded[user]
                if collection is None:
                    grants[org] = None
                elif org not in grants or grants[org] is not None:
                    grants[org] = (grants.get(org) or frozenset()) | {collection}
            for user, grants in loaded.items():
                # asked for again while this load ran (its rows may predate the change), or gone
                if user in self._queued or user not in self._connected:
                    continue
                self._index(user, grants)
                self._catch_up(user, self._loading.pop(user))
        if not self._loading:
            # no one to catch up: what the log kept goes (users gone meanwhile included)
            self._log.clear()
            self._log_start = self._next

    def _catch_up(self, user: str, since: int) -> None:
        if since < self._log_start:
            # some of its events are gone from the log: a full sync covers them
            now = datetime.now(timezone.utc)
            self._replay(user, Event(PushType.SYNC_VAULT, user, None, None, now, None))
            return
        for position, event in self._log:
            if position >= since:
                self._replay(user, event)

    def _index(self, user: str, grants: Grants) -> None:
        self._grants[user] = grants
        for org, collections in grants.items():
            self._members.setdefault(org, set()).add(user)
            if collections is None:
                self._everything.setdefault(org, set()).add(user)
            else:
                for collection in collections:
                    self._by_collection.setdefault(collection, set()).add(user)

    def _forget(self, user: str) -> None:
        grants = self._grants.pop(user, None)
        if grants is None:
            return
        for org, collections in grants.items():
            _discard(self._members, org, user)
            if collections is None:
                _discard(self._everything, org, user)
            else:
                for collection in collections:
                    _discard(self._by_collection, collection, user)


def _known(cache: dict[frozenset[str] | None, tuple[str, ...] | None], granted: frozenset[str] | None,
           collections: tuple[str, ...]) -> tuple[str, ...] | None:
    """The collections a member with these grants may know of; None when none."""
    if granted not in cache:
        cache[granted] = (collections if granted is None else tuple(c for c in collections if c in granted)) or None
    return cache[granted]


def _discard(index: dict[str, set[str]], key: str, user: str) -> None:
    users = index.get(key)
    if users is not None:
        users.discard(user)
        if not users:
            del index[key]
