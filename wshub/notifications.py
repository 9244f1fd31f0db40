"""What a Bitwarden client receives for a published event: the ReceiveMessage invocation.

The argument is ``{"ContextId", "Type", "Payload"}``; the payload's keys depend on what the
event is about (an item, a folder, the whole account, an auth request). Keys are PascalCase and
every key is present, with None where there is no value, as the clients expect.
"""

from __future__ import annotations

from typing import Any

from db.events import Event, PushType
from wshub.codec import Invocation

__all__ = [
    "AUTH_REQUEST_RESPONSE_TARGET",
    "RECEIVE_MESSAGE_TARGET",
    "auth_request_response",
    "payload",
    "receive_message",
    "receive_message_argument",
]

RECEIVE_MESSAGE_TARGET = "ReceiveMessage"
#: Spelled so by the clients.
AUTH_REQUEST_RESPONSE_TARGET = "AuthRequestResponseRecieved"

_CIPHER_TYPES = frozenset({PushType.SYNC_CIPHER_UPDATE, PushType.SYNC_CIPHER_CREATE,
                           PushType.SYNC_LOGIN_DELETE, PushType.SYNC_CIPHER_DELETE})
_ITEM_TYPES = frozenset({PushType.SYNC_FOLDER_DELETE, PushType.SYNC_FOLDER_CREATE,
                         PushType.SYNC_FOLDER_UPDATE, PushType.SYNC_SEND_CREATE,
                         PushType.SYNC_SEND_UPDATE, PushType.SYNC_SEND_DELETE})
_AUTH_REQUEST_TYPES = frozenset({PushType.AUTH_REQUEST, PushType.AUTH_REQUEST_RESPONSE})


def payload(event: Event) -> dict[str, Any]:
    """The Payload object for the event's push type."""
    if event.type in _CIPHER_TYPES:
        return {"Id": event.item_id, "UserId": event.user_id, "OrganizationId": event.org_id,
                "CollectionIds": None, "RevisionDate": event.date}
    if event.type in _ITEM_TYPES:
        return {"Id": event.item_id, "UserId": event.user_id, "RevisionDate": event.date}
    if event.type in _AUTH_REQUEST_TYPES:
        return {"Id": event.item_id, "UserId": event.user_id}
    # Account-wide: full sync, settings, log out, organization changes.
    return {"UserId": event.user_id, "Date": event.date}


def receive_message_argument(event: Event) -> dict[str, Any]:
    return {"ContextId": event.context_id, "Type": int(event.type), "Payload": payload(event)}


def receive_message(event: Event) -> Invocation:
    """The invocation sent to every connection of the event's user."""
    return Invocation(RECEIVE_MESSAGE_TARGET, [receive_message_argument(event)])


def auth_request_response(event: Event) -> Invocation:
    """The invocation sent on the anonymous hub to the device waiting for this approval."""
    argument = {"Type": int(event.type), "Payload": payload(event), "UserId": event.user_id}
    return Invocation(AUTH_REQUEST_RESPONSE_TARGET, [argument])
