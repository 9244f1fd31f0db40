"""What a Bitwarden client receives for a published event: the ReceiveMessage invocation.

The argument is ``{"ContextId", "Type", "Payload"}``: ContextId is the acting device's identifier
(``Event.device_identifier``), and the payload's keys follow the push type's payload shape
(``PushType.payload``: cipher, folder, send, user-level, auth request). Keys are PascalCase and
every key is present, with None where there is no value, as the clients expect.
"""

from __future__ import annotations

from typing import Any

from dataclasses import replace

from db.events import Event, Payload, PushType
from wshub.codec import Invocation

__all__ = [
    "AUTH_REQUEST_RESPONSE_TARGET",
    "RECEIVE_MESSAGE_TARGET",
    "auth_request_response",
    "organization_message",
    "payload",
    "receive_message",
    "receive_message_argument",
]

RECEIVE_MESSAGE_TARGET = "ReceiveMessage"
#: Spelled so by the clients.
AUTH_REQUEST_RESPONSE_TARGET = "AuthRequestResponseRecieved"


def payload(event: Event) -> dict[str, Any]:
    """The Payload object for the event's push type, in the shape PushType names."""
    shape = event.type.payload
    if shape is Payload.CIPHER:
        collection_ids = list(event.collections) if event.collections else None
        return {"Id": event.item_id, "UserId": event.user_id, "OrganizationId": event.org_id,
                "CollectionIds": collection_ids, "RevisionDate": event.date}
    if shape is Payload.FOLDER or shape is Payload.SEND:
        return {"Id": event.item_id, "UserId": event.user_id, "RevisionDate": event.date}
    if shape is Payload.AUTH_REQUEST:
        return {"Id": event.item_id, "UserId": event.user_id}
    if shape is Payload.USER:
        return {"UserId": event.user_id, "Date": event.date}
    # decode_event refuses these, so only a hand-made Event gets here
    raise ValueError(f"no payload shape for push type {event.type!r}")


def receive_message_argument(event: Event) -> dict[str, Any]:
    return {"ContextId": event.device_identifier, "Type": int(event.type), "Payload": payload(event)}


def receive_message(event: Event) -> Invocation:
    """The invocation sent to every connection of the event's user."""
    return Invocation(RECEIVE_MESSAGE_TARGET, [receive_message_argument(event)])


def organization_message(event: Event, push_type: PushType, collection_ids: tuple[str, ...] | None) -> Invocation:
    """An organization's event as one group of its members gets it: the push type that group
    gets (a member who gains or loses the item hears a create or a delete) and the item's
    collections they may know of."""
    return receive_message(replace(event, type=push_type, collections=collection_ids, moved_from=None))


def auth_request_response(event: Event) -> Invocation:
    """The invocation sent on the anonymous hub to the device waiting for this approval."""
    argument = {"Type": int(event.type), "Payload": payload(event), "UserId": event.user_id}
    return Invocation(AUTH_REQUEST_RESPONSE_TARGET, [argument])
