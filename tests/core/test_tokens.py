"""Access tokens name their key: the verifier picks the public key by kid, and keys retire."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from core.tokens import (
    SigningKey,
    SigningKeyError,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    UnknownKeyId,
    VerifiedTokens,
    VerifyingKey,
    is_encrypted,
    key_id,
)

ISSUER = "https://vault.test|login"
CLAIMS = {"sub": "7c1e1b8e-7c2d-4a55-9d6c-0f0d0c7a8b11", "sstamp": "s"}


def verifier_for(*keys: VerifyingKey) -> TokenVerifier:
    return TokenVerifier({key.kid: key for key in keys}, ISSUER)


def test_issued_token_names_its_key_and_verifies() -> None:
    key = SigningKey.generate()
    token = TokenIssuer(key, ISSUER, 600).issue(CLAIMS)
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    assert verifier_for(key.verifying_key()).check(token)["sub"] == CLAIMS["sub"]


def test_key_id_is_derived_from_the_public_key() -> None:
    key = SigningKey.generate()
    assert key.kid == key_id(key.public_pem) and len(key.kid) == 16
    assert key_id(SigningKey.generate().public_pem) != key.kid


def test_verifier_picks_the_key_named_by_the_token() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    verifier = verifier_for(old.verifying_key(), new.verifying_key())
    for key in (old, new):
        assert verifier.check(TokenIssuer(key, ISSUER, 600).issue(CLAIMS))["sub"] == CLAIMS["sub"]


def test_token_whose_kid_names_another_key_is_refused() -> None:
    signer, other = SigningKey.generate(), SigningKey.generate()
    token = jwt.encode({**CLAIMS, "iss": ISSUER, "nbf": int(time.time()), "exp": int(time.time()) + 600},
                       signer.private_key, algorithm="RS256", headers={"kid": other.kid})
    with pytest.raises(TokenError):
        verifier_for(signer.verifying_key(), other.verifying_key()).check(token)


def test_token_with_an_unknown_kid_raises_unknown_key_id() -> None:
    known, stranger = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(UnknownKeyId) as caught:
        verifier_for(known.verifying_key()).check(TokenIssuer(stranger, ISSUER, 600).issue(CLAIMS))
    assert caught.value.kid == stranger.kid


@pytest.mark.parametrize("kid", [None, 17, ""])
def test_token_without_a_usable_kid_is_refused(kid: object) -> None:
    key = SigningKey.generate()
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"} | ({} if kid is None else {"kid": kid})
    # by hand: PyJWT itself refuses to write a kid that is no string
    signing_input = b".".join(jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (
        header, {**CLAIMS, "iss": ISSUER, "nbf": now, "exp": now + 600}))
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, key.private_key)
    token = (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()
    with pytest.raises(TokenError):
        verifier_for(key.verifying_key()).check(token)


def test_key_past_its_retirement_verifies_nothing() -> None:
    key = SigningKey.generate()
    token = TokenIssuer(key, ISSUER, 600).issue(CLAIMS)
    assert verifier_for(key.verifying_key(retires_at=time.time() + 60)).check(token)
    with pytest.raises(TokenError, match="retired"):
        verifier_for(key.verifying_key(retires_at=time.time() - 1)).check(token)


def test_token_from_before_key_ids_verifies_with_the_key_that_signed_it_then() -> None:
    legacy = SigningKey.generate()
    now = int(time.time())
    # what the server issued before tokens carried a kid
    old_token = jwt.encode({**CLAIMS, "iss": ISSUER, "nbf": now - 60, "exp": now + 600}, legacy.private_key,
                           algorithm="RS256")
    verifier = verifier_for(legacy.verifying_key(no_kid_before=now - 30), SigningKey.generate().verifying_key())
    assert verifier.check(old_token)["sub"] == CLAIMS["sub"]
    # issued after the upgrade: it should have named its key
    late = jwt.encode({**CLAIMS, "iss": ISSUER, "nbf": now, "exp": now + 600}, legacy.private_key, algorithm="RS256")
    with pytest.raises(TokenError):
        verifier.check(late)


async def test_verify_asks_for_a_reload_once_when_the_kid_is_unknown() -> None:
    known, fresh = SigningKey.generate(), SigningKey.generate()
    keys = {known.kid: known.verifying_key()}
    asked: list[str] = []

    async def reload(kid: str) -> bool:
        asked.append(kid)
        keys[fresh.kid] = fresh.verifying_key()
        return True

    verifier = TokenVerifier(keys, ISSUER, reload=reload)
    assert (await verifier.verify(TokenIssuer(fresh, ISSUER, 600).issue(CLAIMS)))["sub"] == CLAIMS["sub"]
    assert asked == [fresh.kid]
    assert await verifier.verify(TokenIssuer(known, ISSUER, 600).issue(CLAIMS))
    assert asked == [fresh.kid], "a known kid needs no reload"


async def test_verify_refuses_an_unknown_kid_when_the_reload_finds_nothing() -> None:
    async def reload(kid: str) -> bool:
        return False

    verifier = TokenVerifier({}, ISSUER, reload=reload)
    with pytest.raises(UnknownKeyId):
        await verifier.verify(TokenIssuer(SigningKey.generate(), ISSUER, 600).issue(CLAIMS))


def test_issuer_signs_with_the_key_it_is_given_from_then_on() -> None:
    first, second = SigningKey.generate(), SigningKey.generate()
    issuer = TokenIssuer(first, ISSUER, 600)
    issuer.key = second
    assert jwt.get_unverified_header(issuer.issue(CLAIMS))["kid"] == second.kid


def test_private_key_encrypted_with_a_passphrase_opens_only_with_it() -> None:
    key = SigningKey.generate()
    sealed = key.private_pem("correct horse")
    assert is_encrypted(sealed) and "ENCRYPTED" in sealed.splitlines()[0]
    opened = SigningKey.from_pem(key.kid, sealed, "correct horse")
    assert opened.public_pem == key.public_pem
    with pytest.raises(SigningKeyError, match="SIGNING_KEY_PASSPHRASE"):
        SigningKey.from_pem(key.kid, sealed, None)
    with pytest.raises(SigningKeyError, match="does not decrypt"):
        SigningKey.from_pem(key.kid, sealed, "wrong")


def test_plain_private_key_opens_with_or_without_a_passphrase() -> None:
    key = SigningKey.generate()
    plain = key.private_pem()
    assert not is_encrypted(plain)
    assert SigningKey.from_pem(key.kid, plain, None).public_pem == key.public_pem
    assert SigningKey.from_pem(key.kid, plain, "unused").public_pem == key.public_pem


def test_signing_key_repr_shows_no_private_material() -> None:
    key = SigningKey.generate()
    assert "PRIVATE" not in repr(key) and key.kid in repr(key)


# -- tokens verified before ------------------------------------------------------------------------


def _remembering(*keys: VerifyingKey, max_bytes: int = 1 << 20, leeway: float = 5.0) -> TokenVerifier:
    return TokenVerifier({key.kid: key for key in keys}, ISSUER, leeway, verified=VerifiedTokens(max_bytes))


def test_a_token_checked_again_gives_the_same_claims_and_a_copy() -> None:
    key = SigningKey.generate()
    verifier = _remembering(key.verifying_key())
    token = TokenIssuer(key, ISSUER, 600).issue(CLAIMS)
    first = verifier.check(token)
    first["sub"] = "changed by a caller"
    again = verifier.check(token)
    assert again["sub"] == CLAIMS["sub"] and again["sstamp"] == "s"


def test_only_the_very_same_token_is_remembered() -> None:
    key = SigningKey.generate()
    verifier = _remembering(key.verifying_key())
    token = TokenIssuer(key, ISSUER, 600).issue(CLAIMS)
    verifier.check(token)
    header, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(
        {**json.loads(jwt.utils.base64url_decode(payload)), "sub": "someone else"}).encode()).decode()
    with pytest.raises(TokenError):
        verifier.check(f"{header}.{forged_payload}.{signature}")
    with pytest.raises(TokenError):
        verifier.check(f"{header}.{payload}.{signature[:-4]}AAAA")


def test_a_remembered_token_is_refused_once_its_key_is_retired_or_gone() -> None:
    key = SigningKey.generate()
    keys = {key.kid: key.verifying_key()}
    verifier = TokenVerifier(keys, ISSUER, verified=VerifiedTokens())
    token = TokenIssuer(key, ISSUER, 600).issue(CLAIMS)
    verifier.check(token)
    keys[key.kid] = key.verifying_key(retires_at=time.time() - 1)
    with pytest.raises(TokenError, match="retired"):
        verifier.check(token)
    del keys[key.kid]
    with pytest.raises(UnknownKeyId):
        verifier.check(token)


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    key = SigningKey.generate()
    verifier = _remembering(key.verifying_key(), leeway=0)
    token = TokenIssuer(key, ISSUER, 1).issue(CLAIMS)
    assert verifier.check(token)["sub"] == CLAIMS["sub"]
    time.sleep(1.1)
    with pytest.raises(TokenError):
        verifier.check(token)


def test_what_is_remembered_is_bounded_in_bytes() -> None:
    key = SigningKey.generate()
    verified = VerifiedTokens(max_bytes=4 * VerifiedTokens.ENTRY_BYTES)
    verifier = TokenVerifier({key.kid: key.verifying_key()}, ISSUER, verified=verified)
    issuer = TokenIssuer(key, ISSUER, 600)
    tokens = [issuer.issue({**CLAIMS, "device": str(n)}) for n in range(10)]
    for token in tokens:
        verifier.check(token)
        assert len(verified) <= 4
    assert all(verifier.check(token)["device"] == str(n) for n, token in enumerate(tokens))  # evicted: checked anew
