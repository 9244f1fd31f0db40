"""A small Bitwarden client for tests: registers, logs in, and does the client-side crypto.

It speaks to a running API over real HTTP (httpx) as the official clients do: the same
headers, the same form-encoded token request, the same EncStrings; for organizations, the
same key exchange (an organization key wrapped to each member's public key).
"""

from __future__ import annotations

import secrets
import ssl
import string
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx

from vaultapi.clientcrypto import (
    AccountKeys,
    SymmetricKey,
    make_account_keys,
    make_key_pair,
    make_organization_keys,
    master_key,
    master_password_hash,
    unlock_user_key,
    unwrap_key,
    wrap_key,
)

__all__ = ["BitwardenClient", "LoginRequest", "TEST_ITERATIONS"]

#: fewer KDF rounds than a real account (600000) keep tests quick; still above the server minimum
TEST_ITERATIONS = 100_000
CLI_DEVICE_TYPE = 25  # LinuxCLI


@dataclass(frozen=True)
class LoginRequest:
    """What a device asking to log in with another keeps: the request, its access code and the
    private half of the key pair whose public half it sent."""

    id: str
    access_code: str
    private_key: bytes
    reply: dict[str, Any]


class BitwardenClient:
    """One device of one user. `device` is its device identifier (the events' ContextId)."""

    def __init__(self, base_url: str, *, device: str | None = None, device_type: int = CLI_DEVICE_TYPE,
                 verify: ssl.SSLContext | bool = True, local_address: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.device = device or str(uuid.uuid4())
        self.device_type = device_type
        # verify: the TLS trust for an https base_url (the end-to-end tests' own CA);
        # local_address: connect from another loopback address (127.0.0.2, ...) to be another client
        transport = httpx.AsyncHTTPTransport(verify=verify, local_address=local_address) if local_address else None
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=30, verify=verify, transport=transport)
        self.email: str | None = None
        self.password: str | None = None
        self.iterations = TEST_ITERATIONS
        self.user_key: SymmetricKey | None = None
        #: the account's private key (PKCS#8 DER), which opens the organization keys
        self.private_key: bytes | None = None
        #: organization id -> its key, as this client learnt it (made it, or synced it)
        self.org_keys: dict[str, SymmetricKey] = {}
        self.tokens: dict[str, Any] = {}

    async def __aenter__(self) -> BitwardenClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- account -----------------------------------------------------------------------

    def _device_headers(self) -> dict[str, str]:
        return {
            "Device-Type": str(self.device_type),
            "Bitwarden-Client-Name": "cli",
            "Bitwarden-Client-Version": "2026.9.0",
            "Device-Identifier": self.device,
        }

    async def register(self, email: str, password: str, name: str | None = None,
                       iterations: int = TEST_ITERATIONS) -> AccountKeys:
        """Create the account through the legacy register route; raises on a non-2xx reply."""
        keys = make_account_keys(email, password, iterations)
        response = await self.http.post("/identity/accounts/register", headers=self._device_headers(), json={
            "email": email, "name": name, "masterPasswordHash": keys.master_password_hash,
            "masterPasswordHint": None, "key": keys.key, "kdf": 0, "kdfIterations": iterations,
            "keys": {"publicKey": keys.public_key, "encryptedPrivateKey": keys.encrypted_private_key},
        })
        response.raise_for_status()
        self.email, self.password, self.iterations = email, password, iterations
        return keys

    async def register_by_mail(self, email: str, password: str, inbox: Any, name: str | None = None,
                               iterations: int = TEST_ITERATIONS) -> AccountKeys:
        """Register as the current clients do on a server that sends mail: ask for the link,
        take its token from the mail that arrived in `inbox` (tests.support.smtp), finish."""
        before = len(inbox.to(email.lower()))
        asked = await self.http.post("/identity/accounts/register/send-verification-email",
                                     headers=self._device_headers(), json={"email": email, "name": name})
        asked.raise_for_status()
        mail = (await inbox.wait(email.lower(), before + 1))[-1]
        token = parse_qs(mail.link().split("?", 1)[1])["token"][0]
        keys = make_account_keys(email, password, iterations)
        finished = await self.http.post("/identity/accounts/register/finish", headers=self._device_headers(), json={
            "email": email, "emailVerificationToken": token, "masterPasswordHash": keys.master_password_hash,
            "userSymmetricKey": keys.key, "kdf": 0, "kdfIterations": iterations,
            "userAsymmetricKeys": {"publicKey": keys.public_key, "encryptedPrivateKey": keys.encrypted_private_key},
        })
        finished.raise_for_status()
        self.email, self.password, self.iterations = email, password, iterations
        return keys

    def password_hash(self, password: str | None = None) -> str:
        password = password if password is not None else self.password
        return master_password_hash(master_key(password, self.email, self.iterations), password)

    async def request_token(self, password: str | None = None, two_factor: tuple[int, str] | None = None,
                            remember: bool = False) -> httpx.Response:
        """The password grant; two_factor: (provider type, code) for the second step."""
        form = {
            "grant_type": "password", "username": self.email, "password": self.password_hash(password),
            "scope": "api offline_access", "client_id": "cli", "deviceType": str(self.device_type),
            "deviceIdentifier": self.device, "deviceName": "linux",
        }
        if two_factor is not None:
            form |= {"twoFactorProvider": str(two_factor[0]), "twoFactorToken": two_factor[1],
                     "twoFactorRemember": "1" if remember else "0"}
        return await self.http.post("/identity/connect/token", headers=self._device_headers(), data=form)

    async def login(self, email: str | None = None, password: str | None = None) -> dict[str, Any]:
        """Log in with the password grant and unlock the user key; returns the token reply."""
        if email is not None:
            self.email = email
        if password is not None:
            self.password = password
        prelogin = await self.http.post("/identity/accounts/prelogin/password", json={"email": self.email})
        prelogin.raise_for_status()
        self.iterations = prelogin.json()["kdfSettings"]["iterations"]
        response = await self.request_token()
        response.raise_for_status()
        self.tokens = response.json()
        self.user_key = unlock_user_key(self.password, self.email, self.iterations, self.tokens["Key"])
        if self.tokens.get("PrivateKey"):
            self.private_key = self.user_key.decrypt(self.tokens["PrivateKey"])
        return self.tokens

    async def refresh(self) -> httpx.Response:
        response = await self.http.post("/identity/connect/token", headers=self._device_headers(), data={
            "grant_type": "refresh_token", "client_id": "cli", "refresh_token": self.tokens["refresh_token"],
        })
        if response.status_code == 200:
            self.tokens = {**self.tokens, **response.json()}
        return response

    @property
    def access_token(self) -> str:
        return self.tokens["access_token"]

    @property
    def auth_headers(self) -> dict[str, str]:
        return {**self._device_headers(), "Authorization": f"Bearer {self.access_token}"}

    # ---- login with device ------------------------------------------------------------

    async def ask_to_log_in(self, email: str, request_type: int = 0) -> tuple[httpx.Response, LoginRequest | None]:
        """POST an auth request as the clients' login page does: the reply, and what this device
        keeps of an accepted request."""
        public_key, private_key = make_key_pair()
        code = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(25))
        response = await self.http.post("/api/auth-requests", headers=self._device_headers(), json={
            "email": email, "publicKey": public_key, "deviceIdentifier": self.device, "accessCode": code,
            "type": request_type,
        })
        if response.status_code != 200:
            return response, None
        return response, LoginRequest(response.json()["id"], code, private_key, response.json())

    async def answer(self, request_id: str, approve: bool = True) -> httpx.Response:
        """Approve (the user key encrypted to the request's public key) or deny, from this device."""
        public_key = (await self.get(f"/api/auth-requests/{request_id}")).json().get("publicKey")
        # a request this device cannot read is answered all the same, with a key of the right shape
        key = (wrap_key(public_key, self.user_key) if public_key else "4.AAAA") if approve and self.user_key else None
        return await self.put(f"/api/auth-requests/{request_id}", json={
            "key": key, "masterPasswordHash": None, "deviceIdentifier": self.device, "requestApproved": approve,
        })

    async def read_answer(self, request: LoginRequest) -> httpx.Response:
        return await self.http.get(f"/api/auth-requests/{request.id}/response",
                                   params={"code": request.access_code}, headers=self._device_headers())

    async def log_in_with_request(self, email: str, request: LoginRequest) -> httpx.Response:
        """Read the approval, log in with the access code, and unlock with the key it carries; the
        first reply that is not a 200."""
        answer = await self.read_answer(request)
        if answer.status_code != 200:
            return answer
        response = await self.request_token_with(email, request)
        if response.status_code == 200:
            self.email, self.tokens = email, response.json()
            self.user_key = unwrap_key(request.private_key, answer.json()["key"])
            if self.tokens.get("PrivateKey"):
                self.private_key = self.user_key.decrypt(self.tokens["PrivateKey"])
        return response

    async def request_token_with(self, email: str, request: LoginRequest) -> httpx.Response:
        """The password grant of login with device: the access code as the password."""
        return await self.http.post("/identity/connect/token", headers=self._device_headers(), data={
            "grant_type": "password", "username": email, "password": request.access_code,
            "authRequest": request.id, "scope": "api offline_access", "client_id": "web",
            "deviceType": str(self.device_type), "deviceIdentifier": self.device, "deviceName": "linux",
        })

    # ---- API calls -----------------------------------------------------------------------

    async def call(self, method: str, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth_headers, **kwargs.pop("headers", {})}
        return await self.http.request(method, path, json=json, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.call("POST", path, json, **kwargs)

    async def put(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.call("PUT", path, json, **kwargs)

    async def delete(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.call("DELETE", path, json, **kwargs)

    # ---- crypto --------------------------------------------------------------------------

    def encrypt(self, text: str) -> str:
        assert self.user_key is not None, "log in first"
        return self.user_key.encrypt_text(text)

    def decrypt(self, enc_string: str) -> str:
        assert self.user_key is not None, "log in first"
        return self.user_key.decrypt_text(enc_string)

    def login_item(self, name: str, username: str = "alice", password: str = "s3cret",
                   folder_id: str | None = None) -> dict[str, Any]:
        """A login item as the clients send it, its text fields encrypted under the user key."""
        return {
            "type": 1, "folderId": folder_id, "organizationId": None, "name": self.encrypt(name),
            "notes": None, "favorite": False, "reprompt": 0, "fields": None, "passwordHistory": None,
            "login": {"username": self.encrypt(username), "password": self.encrypt(password),
                      "uris": [{"uri": self.encrypt("https://example.com"), "match": None}],
                      "totp": None, "passwordRevisionDate": None},
        }

    # ---- organizations -------------------------------------------------------------------

    async def create_organization(self, name: str = "Acme", collection_name: str | None = "Default collection",
                                  ) -> dict[str, Any]:
        """What the web vault sends to create an organization (the Free plan it asks for is
        ignored); this client becomes its Owner and keeps its key."""
        keys = make_organization_keys()
        response = await self.post("/api/organizations", {
            "name": name, "businessName": "", "billingEmail": self.email, "planType": 0,
            "key": wrap_key(self.tokens["AccountKeys"]["publicKeyEncryptionKeyPair"]["publicKey"], keys.key),
            "keys": {"publicKey": keys.public_key, "encryptedPrivateKey": keys.encrypted_private_key},
            "collectionName": keys.key.encrypt_text(collection_name) if collection_name else None,
            "additionalSeats": 0, "useSecretsManager": False, "initiationPath": "New organization creation in-product",
        })
        response.raise_for_status()
        organization = response.json()
        self.org_keys[organization["id"]] = keys.key
        return organization

    async def sync(self) -> dict[str, Any]:
        """A full sync; it also opens the organization keys the profile hands this user."""
        response = await self.get("/api/sync")
        response.raise_for_status()
        data = response.json()
        assert self.private_key is not None, "log in first"
        for organization in data["profile"]["organizations"]:
            self.org_keys[organization["id"]] = unwrap_key(self.private_key, organization["key"])
        return data

    def org_encrypt(self, organization_id: str, text: str) -> str:
        return self.org_keys[organization_id].encrypt_text(text)

    def org_decrypt(self, organization_id: str, enc_string: str) -> str:
        return self.org_keys[organization_id].decrypt_text(enc_string)

    def org_item(self, organization_id: str, name: str, username: str = "alice",
                 password: str = "s3cret") -> dict[str, Any]:
        """A login item of the organization, encrypted under its key."""
        return {
            "type": 1, "folderId": None, "organizationId": organization_id,
            "name": self.org_encrypt(organization_id, name), "notes": None, "favorite": False, "reprompt": 0,
            "fields": None, "passwordHistory": None,
            "login": {"username": self.org_encrypt(organization_id, username),
                      "password": self.org_encrypt(organization_id, password), "uris": None, "totp": None},
        }

    async def confirm_member(self, organization_id: str, membership_id: str) -> httpx.Response:
        """`bw confirm org-member`: the member's public key, the organization key wrapped to it."""
        member = await self.get(f"/api/organizations/{organization_id}/users/{membership_id}?")
        member.raise_for_status()
        public_key = await self.get(f"/api/users/{member.json()['userId']}/public-key")
        public_key.raise_for_status()
        return await self.post(f"/api/organizations/{organization_id}/users/{membership_id}/confirm", {
            "key": wrap_key(public_key.json()["publicKey"], self.org_keys[organization_id]),
            "defaultUserCollectionName": self.org_encrypt(organization_id, "My items"),
        })
