"""Signed tokens for one purpose each: a remembered two-step device, a two-step setup the user
verified, an invitation. Each purpose has its own issuer name, so a token of one purpose is
refused for every other (and an access token for all of them).

They are JWTs signed by the same key ring as access tokens, so every API replica accepts every
other's. A rotated-out key verifies only as long as an access token lives: a longer-lived token
it signed (a remembered device, an invitation) then stops working, and the user is asked again.
"""

from __future__ import annotations

from typing import Any

from core.keyring import KeyRing
from core.tokens import TokenError, TokenIssuer, TokenVerifier

__all__ = ["LIFETIMES", "PurposeTokens", "TokenError"]

#: seconds each purpose's tokens are valid (the Bitwarden server's lifetimes)
LIFETIMES = {
    "2fa-remember": 30 * 24 * 3600,
    "2fa-setup": 30 * 60,
    "2fa-email-session": 15 * 60,
    "invite": 5 * 24 * 3600,
}


class PurposeTokens:
    def __init__(self, keys: KeyRing, domain: str) -> None:
        base = domain.rstrip("/")
        self._issuers: dict[str, TokenIssuer] = {
            purpose: keys.issuer(f"{base}|{purpose}", lifetime) for purpose, lifetime in LIFETIMES.items()}
        self._verifiers: dict[str, TokenVerifier] = {
            purpose: keys.verifier(f"{base}|{purpose}") for purpose in LIFETIMES}

    def issue(self, purpose: str, subject: str, **claims: Any) -> str:
        return self._issuers[purpose].issue({"sub": subject, **claims})

    async def claims(self, purpose: str, token: str) -> dict[str, Any] | None:
        """The token's claims when it is valid for the purpose, else None."""
        if not token or len(token) > 4096:
            return None
        try:
            return await self._verifiers[purpose].verify(token)
        except TokenError:
            return None
