"""A running process's copy of the token keys, kept in step with the database without a restart.

Every API replica and hub holds one. It learns of a rotation two ways:

- a token naming a key it does not know makes it reload the public keys at once (at most once
  per ``miss_interval``, so a stream of made-up kids cannot make it query the database for
  each);
- every ``refresh_interval`` it reloads them anyway (a key retired at once stops verifying), and
  a signing ring checks the signing key's id, moving its issuers to a new key.

So after `pgwarden keys rotate` every replica signs with the new key within ``refresh_interval``;
the grace of the old key allows for that (see :func:`retirement_grace`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import timedelta

from core.database import DATABASE_ERRORS
from core.keystore import Database, load_signing_key, load_verifying_keys, signing_kid
from core.tokens import (LEEWAY, SigningKey, SigningKeyError, TokenIssuer, TokenVerifier, VerifiedTokens,
                         VerifyingKey)

__all__ = ["MISS_INTERVAL", "REFRESH_INTERVAL", "KeyRing", "retirement_grace"]

log = logging.getLogger(__name__)

#: Seconds between two reloads of the keys (and checks of the signing key).
REFRESH_INTERVAL = 30.0
#: Least seconds between two reloads caused by tokens naming unknown keys.
MISS_INTERVAL = 5.0
#: Beyond the token lifetime and the refresh: clocks that differ, a token signed mid-rotation.
_MARGIN = 60.0


def retirement_grace(longest_token_lifetime: float) -> timedelta:
    """How long a rotated-out key must keep verifying: until the last token it signed expired,
    counting the replicas that still sign with it until their next refresh."""
    return timedelta(seconds=longest_token_lifetime + REFRESH_INTERVAL + LEEWAY + _MARGIN)


class KeyRing:
    """The verifying keys and, for a ring that ``signs`` (the API), the signing key."""

    def __init__(
        self,
        db: Database,
        *,
        passphrase: str | None = None,
        signs: bool = False,
        refresh_interval: float = REFRESH_INTERVAL,
        miss_interval: float = MISS_INTERVAL,
    ) -> None:
        self.db = db
        self.signs = signs
        self.refresh_interval = refresh_interval
        self.miss_interval = miss_interval
        #: kid to key; the verifiers read this very dict, so it is updated in place.
        self.keys: dict[str, VerifyingKey] = {}
        self.signing_key: SigningKey | None = None
        self._passphrase = passphrase
        self._issuers: list[TokenIssuer] = []
        self._miss_lock = asyncio.Lock()
        self._last_miss_reload = -math.inf

    async def load(self) -> None:
        """Read the keys; raises SigningKeyError when there are none, or the signing key is locked."""
        await self._load_public()
        if not self.keys:
            raise SigningKeyError("the database has no token signing key yet: run `pgwarden migrate` first")
        if self.signs:
            await self._load_signing()

    def issuer(self, issuer: str, lifetime: int) -> TokenIssuer:
        if self.signing_key is None:
            raise RuntimeError("an issuer needs a signing ring, loaded")
        made = TokenIssuer(self.signing_key, issuer, lifetime)
        self._issuers.append(made)
        return made

    def verifier(self, issuer: str, leeway: float = LEEWAY, verified: VerifiedTokens | None = None) -> TokenVerifier:
        return TokenVerifier(self.keys, issuer, leeway, reload=self._reload_for, verified=verified)

    async def refresh(self) -> None:
        """Reload the verifying keys and, when signing, follow a new signing key."""
        await self._load_public()
        if self.signs and self.signing_key is not None and await signing_kid(self.db) != self.signing_key.kid:
            await self._load_signing()

    async def keep_fresh(self) -> None:
        """Refresh every ``refresh_interval`` until cancelled; a failure keeps the keys it has."""
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except DATABASE_ERRORS as error:
                log.warning("cannot refresh the token keys (%s); keeping the ones loaded", error)
            except SigningKeyError as error:
                log.error("cannot use the new token signing key: %s; still signing with %s",
                          error, self.signing_key.kid if self.signing_key else "none")

    # -- private ------------------------------------------------------------------------------

    async def _reload_for(self, kid: str) -> bool:
        async with self._miss_lock:
            if kid in self.keys:  # a reload while this caller waited found it
                return True
            if time.monotonic() - self._last_miss_reload < self.miss_interval:
                return False
            self._last_miss_reload = time.monotonic()
            await self._load_public()
            return kid in self.keys

    async def _load_public(self) -> None:
        fresh = {key.kid: key for key in await load_verifying_keys(self.db)}
        self.keys.clear()
        self.keys.update(fresh)

    async def _load_signing(self) -> None:
        key = await load_signing_key(self.db, self._passphrase)
        if self.signing_key is not None:
            log.info("signing tokens with key %s from now on", key.kid)
        self.signing_key = key
        for issuer in self._issuers:
            issuer.key = key
