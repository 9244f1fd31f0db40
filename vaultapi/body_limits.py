"""How much one request may carry, and how long one step of a big job may hold the event loop.

Where the Bitwarden server sets a limit, the number here is its number and the comment names the
file it comes from (github.com/bitwarden/server). Where it sets none, the number is what the
official clients send, with room to spare, and the comment says so.
"""

from __future__ import annotations

import asyncio
import time

__all__ = [
    "CARD",
    "CIPHER",
    "CIPHER_KEY",
    "COLLECTION",
    "FIDO2_CREDENTIAL",
    "FIELD",
    "FOLDER_NAME",
    "IDENTITY",
    "IMPORT_BODY",
    "IMPORT_COLLECTION_RELATIONSHIPS",
    "IMPORT_FOLDERS",
    "IMPORT_ITEMS",
    "LOGIN",
    "LOGIN_URI",
    "LOOP_SLICE",
    "MANAGEMENT_BODY",
    "MAX_FORM_FIELDS",
    "MAX_ITEM_DATA",
    "MULTIPART_OVERHEAD",
    "PASSWORD_HISTORY",
    "REGISTRATION_BODY",
    "SMALL_BODY",
    "SSH_KEY",
    "VAULT_BODY",
    "Pacer",
    "body_limit",
]

KiB = 1024
MiB = 1024 * KiB

# ---- request bodies, per route ---------------------------------------------------------------

#: login, refresh, prelogin, verification email, login with device, the account settings: a few
#: short fields (the clients send under 2 KiB; a KDF change about 1 KiB)
SMALL_BODY = 8 * KiB
#: registration carries the wrapped account keys: about 4 KiB from the clients, and the per-field
#: caps of vaultapi/routes/identity.py add up to about 36 KiB
REGISTRATION_BODY = 64 * KiB
#: every other call, vault writes included: one item at its largest (MAX_ITEM_DATA, twice over
#: for a client that also sends the flat `data` copy) or the ids of about 50000 items (39 bytes
#: each) in one bulk call
VAULT_BODY = 2 * MiB
#: the organization, member and collection routes, and an item's collections: names, keys, grants
#: and ids. The web vault sends them for the members or collections selected: 256 KiB holds about
#: 6000 ids, 500 confirmation keys (RSA-wrapped, about 450 characters each) or the grants of 2000
#: members; a larger organization is managed in a few requests.
MANAGEMENT_BODY = 256 * KiB
#: the imports (a user's, an organization's) and the bulk share, the large bodies: it must hold at least Kestrel's default request cap
#: (30,000,000 bytes), which the Bitwarden server keeps for its import
IMPORT_BODY = 32 * MiB

# ---- what one import may hold ----------------------------------------------------------------
# src/Api/Tools/Controllers/ImportCiphersController.cs: Bitwarden's cloud refuses a personal
# import of more than 7000 items, 7000 folder relationships or 2000 folders ("You cannot import
# this much data at once."), and an organization import past its ImportCiphersLimitation
# settings. One import is one transaction a user may start every IMPORT_RATELIMIT_SECONDS: these
# bound what it costs, whatever MAX_ITEMS_PER_USER allows a vault to hold in all.

#: items in one import, personal or into an organization
IMPORT_ITEMS = 7_000
#: folders, or collections of an organization, in one import
IMPORT_FOLDERS = 2_000
#: collection relationships of one organization import: an item in two collections on average
IMPORT_COLLECTION_RELATIONSHIPS = 2 * IMPORT_ITEMS

_BODY_LIMITS = {
    "identity/connect/token": SMALL_BODY,
    "identity/accounts/prelogin/password": SMALL_BODY,
    "identity/accounts/prelogin": SMALL_BODY,
    "api/accounts/prelogin": SMALL_BODY,
    "identity/accounts/register/send-verification-email": SMALL_BODY,
    "identity/accounts/register": REGISTRATION_BODY,
    "api/accounts/register": REGISTRATION_BODY,
    "identity/accounts/register/finish": REGISTRATION_BODY,
    # two-step settings: a code, a key, a token; a WebAuthn attestation is a few KiB
    **dict.fromkeys((
        "api/two-factor/get-authenticator", "api/two-factor/authenticator", "api/two-factor/disable",
        "api/two-factor/get-email", "api/two-factor/send-email", "api/two-factor/email",
        "api/two-factor/send-email-login", "api/two-factor/get-recover", "api/two-factor/recover",
        "api/two-factor/get-webauthn", "api/two-factor/get-webauthn-challenge",
        "api/accounts/password-hint", "api/accounts/email-token",
    ), SMALL_BODY),
    "api/two-factor/webauthn": REGISTRATION_BODY,
    "api/accounts/email": REGISTRATION_BODY,
    # login with device, the account settings: a public key or an encrypted key at most
    **dict.fromkeys((
        "api/auth-requests",
        "api/auth-requests/<request_id:uuid>",
        "api/auth-requests/<request_id:uuid>/response",
        "api/auth-requests/admin-request",
        "api/accounts/api-key",
        "api/accounts/rotate-api-key",
        "api/accounts/kdf",
        "api/accounts/avatar",
        "api/accounts",
        "api/accounts/delete",
        "api/ciphers/purge",
        "api/devices/<device_id:uuid>",
        "api/devices/<device_id:uuid>/deactivate",
        "api/devices/<device_id:uuid>/delete",
    ), SMALL_BODY),
    # anyone with a Send's link: a password hash at most
    "api/sends/access": SMALL_BODY,
    "api/sends/access/file/<file_id:str>": SMALL_BODY,
    "api/sends/access/<link_id:str>": SMALL_BODY,
    "api/sends/<link_id:str>/access/file/<file_id:str>": SMALL_BODY,
    "api/ciphers/import": IMPORT_BODY,
    # organizations: whole items only where items move in bulk
    "api/ciphers/import-organization": IMPORT_BODY,
    "api/ciphers/share": IMPORT_BODY,
    "api/ciphers/create": VAULT_BODY,
    "api/ciphers/<cipher_id:uuid>/share": VAULT_BODY,
    "api/ciphers/<cipher_id:uuid>/collections": MANAGEMENT_BODY,
    "api/ciphers/<cipher_id:uuid>/collections_v2": MANAGEMENT_BODY,
    **dict.fromkeys((
        "api/organizations",
        "api/organizations/<organization_id:uuid>",
        "api/organizations/<organization_id:uuid>/delete",
        "api/organizations/<organization_id:uuid>/keys",
        "api/organizations/<organization_id:uuid>/leave",
        "api/organizations/<organization_id:uuid>/collections",
        "api/organizations/<organization_id:uuid>/collections/delete",
        "api/organizations/<organization_id:uuid>/collections/bulk-access",
        "api/organizations/<organization_id:uuid>/collections/<collection_id:uuid>",
        "api/organizations/<organization_id:uuid>/collections/<collection_id:uuid>/delete",
        "api/organizations/<organization_id:uuid>/users",
        "api/organizations/<organization_id:uuid>/users/invite",
        "api/organizations/<organization_id:uuid>/users/confirm",
        "api/organizations/<organization_id:uuid>/users/public-keys",
        "api/organizations/<organization_id:uuid>/users/remove",
        "api/organizations/<organization_id:uuid>/users/revoke",
        "api/organizations/<organization_id:uuid>/users/restore",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/confirm",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/delete",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/remove",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/revoke",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/restore",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/restore/vnext",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/accept",
        "api/organizations/<organization_id:uuid>/users/<membership_id:uuid>/reinvite",
    ), MANAGEMENT_BODY),
}

#: a file upload (multipart/form-data): the file itself, its size announced (v2) or at most
#: MAX_FILE_SIZE (legacy), and this much for the form around it: boundaries, part headers with
#: the encrypted file name, and the legacy upload's key field
MULTIPART_OVERHEAD = 16 * KiB

#: form fields on the token endpoint: the clients send about 10, never more than 20
MAX_FORM_FIELDS = 64


def body_limit(route_path: str) -> int:
    """The largest body the route (as Sanic names its path, without the leading slash) accepts."""
    return _BODY_LIMITS.get(route_path, VAULT_BODY)


# ---- vault items: maximum encrypted lengths, in characters ------------------------------------

#: one item's encrypted data as stored (name, notes, fields, history, its type's object):
#: CipherRequestModel.Data, [StringLength(500000)]
MAX_ITEM_DATA = 500_000
#: the item's own key; the Bitwarden server does not check it, the clients send about 200 characters
CIPHER_KEY = 10_000

# src/Api/Vault/Models/Request/CipherRequestModel.cs
CIPHER = {"name": 1_000, "notes": 10_000}
# src/Api/Vault/Models/Request/FolderRequestModel.cs
FOLDER_NAME = 1_000
# src/Api/AdminConsole/Models/Request/CollectionRequestModel.cs: the name an EncString, the external id plain
COLLECTION = {"name": 1_000, "externalId": 300}
# src/Api/Vault/Models/CipherFieldModel.cs
FIELD = {"name": 1_000, "value": 5_000}
# src/Api/Vault/Models/CipherPasswordHistoryModel.cs
PASSWORD_HISTORY = {"password": 5_000}
# src/Api/Vault/Models/CipherLoginModel.cs (the login and its CipherLoginUriModel)
LOGIN = {"uri": 10_000, "username": 1_000, "password": 5_000, "totp": 1_000}
LOGIN_URI = {"uri": 10_000, "uriChecksum": 10_000}
# src/Api/Vault/Models/CipherFido2CredentialModel.cs
FIDO2_CREDENTIAL = dict.fromkeys(
    ("credentialId", "keyType", "keyAlgorithm", "keyCurve", "keyValue", "rpId", "rpName", "userHandle",
     "userName", "userDisplayName", "counter", "discoverable"), 1_000)
# src/Api/Vault/Models/CipherCardModel.cs
CARD = dict.fromkeys(("cardholderName", "brand", "number", "expMonth", "expYear", "code"), 1_000)
# src/Api/Vault/Models/CipherIdentityModel.cs
IDENTITY = dict.fromkeys(
    ("title", "firstName", "middleName", "lastName", "address1", "address2", "address3", "city", "state",
     "postalCode", "country", "company", "email", "phone", "ssn", "username", "passportNumber",
     "licenseNumber"), 1_000)
# src/Api/Vault/Models/CipherSSHKeyModel.cs
SSH_KEY = {"privateKey": 5_000, "publicKey": 5_000, "keyFingerprint": 1_000}


# ---- time on the event loop ------------------------------------------------------------------

#: the longest one slice of a big job (reading an import, writing a sync) runs before the other
#: requests get their turn. A worker thread would not help: the JSON codec holds the GIL throughout.
LOOP_SLICE = 0.005


class Pacer:
    """Lets the event loop run other work whenever a job has held it for LOOP_SLICE."""

    def __init__(self) -> None:
        self._since = time.monotonic()

    async def pace(self) -> None:
        if time.monotonic() - self._since >= LOOP_SLICE:
            await asyncio.sleep(0)
            self._since = time.monotonic()
