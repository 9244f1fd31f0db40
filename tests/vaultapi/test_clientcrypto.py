"""The client-side key scheme the admin command and the test client share."""

from __future__ import annotations

import base64

import pytest

from vaultapi.clientcrypto import (
    CryptoError,
    SymmetricKey,
    make_account_keys,
    make_organization_keys,
    master_key,
    master_password_hash,
    unlock_user_key,
    unwrap_key,
)


def test_master_password_hash_depends_on_email_case_insensitively() -> None:
    upper = master_password_hash(master_key("pw", " Alice@Example.com ", 5000), "pw")
    lower = master_password_hash(master_key("pw", "alice@example.com", 5000), "pw")
    other = master_password_hash(master_key("pw", "bob@example.com", 5000), "pw")
    assert upper == lower != other
    assert len(base64.b64decode(lower)) == 32


def test_account_keys_unlock_with_the_password_only() -> None:
    keys = make_account_keys("alice@example.com", "pw", 5000)
    assert keys.key.startswith("2.")
    assert unlock_user_key("pw", "alice@example.com", 5000, keys.key) == keys.user_key
    with pytest.raises(CryptoError):
        unlock_user_key("wrong", "alice@example.com", 5000, keys.key)


def test_enc_string_round_trip_and_tamper_detection() -> None:
    key = SymmetricKey.generate()
    sealed = key.encrypt_text("Bank ✓")
    assert key.decrypt_text(sealed) == "Bank ✓"
    iv, data, mac = sealed[2:].split("|")
    flipped = base64.b64encode(bytes([base64.b64decode(data)[0] ^ 1]) + base64.b64decode(data)[1:]).decode()
    with pytest.raises(CryptoError):
        key.decrypt_text(f"2.{iv}|{flipped}|{mac}")
    with pytest.raises(CryptoError):
        SymmetricKey.generate().decrypt_text(sealed)


def test_organization_key_is_shared_through_a_members_public_key_only() -> None:
    member, stranger = make_account_keys("bob@example.com", "pw", 5000), make_account_keys("eve@example.com", "pw", 5000)
    org = make_organization_keys()
    wrapped = org.wrapped_for(member.public_key)
    assert wrapped.startswith("4.") and wrapped != org.wrapped_for(member.public_key)  # OAEP is randomised
    member_private = member.user_key.decrypt(member.encrypted_private_key)
    assert unwrap_key(member_private, wrapped) == org.key
    with pytest.raises(CryptoError):
        unwrap_key(stranger.user_key.decrypt(stranger.encrypted_private_key), wrapped)
    with pytest.raises(CryptoError):
        unwrap_key(member_private, org.key.encrypt(b"x"))
    # the organization's own private key is wrapped by its key, and pairs with its public key
    assert org.key.decrypt(org.encrypted_private_key) and org.public_key != member.public_key
