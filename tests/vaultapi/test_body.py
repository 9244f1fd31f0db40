"""vaultapi.body: the EncString check and the paced reading of large JSON bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

import pytest

from vaultapi import body_limits
from vaultapi.body import Body, is_enc_string
from vaultapi.errors import ApiError

# the Bitwarden server's own cases (test/Core.Test/Utilities/EncryptedStringAttributeTests.cs)
VALID = [
    "aXY=|Y3Q=", "aXY=|Y3Q=|cnNhQ3Q=", "Rsa2048_OaepSha256_B64.cnNhQ3Q=", "0.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "AesCbc256_B64.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "1.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "AesCbc128_HmacSha256_B64.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "2.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "AesCbc256_HmacSha256_B64.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "3.QmFzZTY0UGFydA==", "Rsa2048_OaepSha256_B64.QmFzZTY0UGFydA==", "4.QmFzZTY0UGFydA==",
    "Rsa2048_OaepSha1_B64.QmFzZTY0UGFydA==", "5.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "Rsa2048_OaepSha256_HmacSha256_B64.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "6.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==", "Rsa2048_OaepSha1_HmacSha256_B64.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "0.AAAA|Y3Q=", "lGD=|lGD=", "lB==|Y3Q=|AAAA", "2.lGD=|lGD=|lGD=", "0.AAAA|QmFzZTY0UGFydB==",
    # XChaCha20-Poly1305: one COSE piece
    "7.QmFzZTY0UGFydA==",
]
INVALID = [
    "Test", "Hello World", "SecretPassword123", "", ".", "|", "||", "!|!", "Rsa2048_OaepSha1_HmacSha256_B64.1",
    "Rsa2048_OaepSha1_HmacSha256_B64.|", "AesCbc128_HmacSha256_B64.1", "AesCbc128_HmacSha256_B64.aXY=|Y3Q=|",
    "Rsa2048_OaepSha1_HmacSha256_B64.aXY=|Y3Q=|", "Rsa2048_OaepSha256_B64.1|2", "Rsa2048_OaepSha1_HmacSha256_B64.aXY=|",
    "254.QmFzZTY0UGFydA==", "0.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "AesCbc256_B64.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "1.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "2.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "3.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==", "4.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "5.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==", "6.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==",
    "Rsa2048_OaepSha1_HmacSha256_B64.QmFzZTY0UGFydA==", "0.AA!!AB==|Y3Q=", "0.AAAAB==|Y3Q=", "0.====|Y3Q=",
    # neither a number nor a type name; digits other than ASCII; the URL-safe alphabet
    "x.QmFzZTY0UGFydA==", "\u0662.QmFzZTY0UGFydA==|QmFzZTY0UGFydA==|QmFzZTY0UGFydA==", "3.QmFz-_Y0UGFydA==",
]


@pytest.mark.parametrize("text", VALID)
def test_encrypted_strings_bitwarden_accepts_are_accepted(text: str) -> None:
    assert is_enc_string(text)


@pytest.mark.parametrize("text", INVALID)
def test_encrypted_strings_bitwarden_refuses_are_refused(text: str) -> None:
    assert not is_enc_string(text)


def test_enc_string_accessor_names_the_field() -> None:
    body = Body({"Name": "2.QUFB|QUFB|QUFB", "notes": "plain", "long": "2.QUFB|" + "Q" * 1000 + "|QUFB"})
    assert body.enc_string("name", max_length=1000) == "2.QUFB|QUFB|QUFB"
    for name, message in (("notes", "not a valid encrypted string"), ("long", "maximum encrypted value length")):
        with pytest.raises(ApiError) as refused:
            body.enc_string(name, max_length=1000)
        assert refused.value.field == name and message in refused.value.message
    with pytest.raises(ApiError):
        body.enc_string("missing", max_length=10, required=True)


# ---- paced parsing of large bodies ------------------------------------------------------------

def _import_body(items: int) -> bytes:
    item = {"type": 1, "name": "2.QUFB|QUFB|QUFB", "notes": "2.QUFB|" + "Q" * 400 + "|QUFB",
            "fields": [{"type": 0, "name": "2.QUFB|QUFB|QUFB", "value": None}] * 5,
            "login": {"username": "2.QUFB|QUFB|QUFB", "uris": [{"uri": "2.QUFB|QUFB|QUFB", "match": None}]}}
    return json.dumps({"ciphers": [item] * items, "folders": [{"name": "2.QUFB|QUFB|QUFB"}] * 10,
                       "folderRelationships": [{"key": 0, "value": 0}], "note": "\U0001F511 \u00e9",
                       "nested": {"a": [1, 2.5, None, True, "x"]}}, indent=1).encode()


async def turns_during(work: Awaitable[Any]) -> tuple[Any, int]:
    """What work returns, and how many turns another task had while it ran."""
    turns = 0
    done = False

    async def other() -> None:
        nonlocal turns
        while not done:
            await asyncio.sleep(0)
            turns += 1

    counting = asyncio.ensure_future(other())
    await asyncio.sleep(0)  # the other task is waiting for its first turn
    try:
        result = await work
        return result, turns
    finally:
        done = True
        await counting


async def test_pacer_hands_the_loop_back_once_a_slice_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    async def paces(count: int) -> None:
        pacer = body_limits.Pacer()
        for _ in range(count):
            await pacer.pace()

    monkeypatch.setattr(body_limits, "LOOP_SLICE", 0.0)
    assert (await turns_during(paces(50)))[1] == 50
    monkeypatch.setattr(body_limits, "LOOP_SLICE", float("inf"))
    assert (await turns_during(paces(50)))[1] == 0


async def test_paced_parse_reads_what_json_reads_and_lets_others_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every step a slice of its own, the others get a turn after each array element."""
    raw = _import_body(2_000)
    monkeypatch.setattr(body_limits, "LOOP_SLICE", 0.0)
    body, turns = await turns_during(Body.parse_paced(raw))
    assert body.raw == json.loads(raw)
    assert turns >= 2_000 + 10, turns
    # and none when no slice is ever spent: the turns above were the parser's doing
    monkeypatch.setattr(body_limits, "LOOP_SLICE", float("inf"))
    body, turns = await turns_during(Body.parse_paced(raw))
    assert body.raw == json.loads(raw) and turns == 0


@pytest.mark.parametrize("raw", [
    b"", b"{", b'{"a": 1', b'{"a": [1, 2', b'{"a": [1, 2,]}', b'{"a": 1,}', b'{"a" 1}', b'{"a": 1} x',
    b'{1: 2}', b"\xff\xfe", b'{"a": "\\ud800"}', b'{"a": [' + b"[" * 100_000 + b"]}", b'{"a": 1e99999999x}',
])
async def test_paced_parse_refuses_what_is_not_a_json_object(raw: bytes) -> None:
    with pytest.raises(ApiError):
        await Body.parse_paced(raw)
    with pytest.raises(ApiError):
        Body.parse(raw)


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"text"', b"12"])
async def test_paced_parse_wants_an_object(raw: bytes) -> None:
    with pytest.raises(ApiError, match="JSON object"):
        await Body.parse_paced(raw)


async def test_paced_parse_agrees_with_json_on_odd_but_valid_bodies() -> None:
    for raw in (b'{}', b' \n{ } \n', b'{"a": []}', b'{"a":[ ]}', b'{"a": [{}], "a": [1]}', b'{"A": 1, "a": 2}',
                b'{"x": NaN, "y": [Infinity]}', b'{"e": "\\ud83d\\udd11", "s": "\\u00e9"}',
                '{"u": "\u00e9\U0001F511"}'.encode(), b'{"n": [12345678901234567890, -0.5e-3, 1E5]}'):
        assert (await Body.parse_paced(raw)).raw == json.loads(raw), raw


async def test_paced_parse_refuses_an_entry_larger_than_an_item_may_be() -> None:
    entry = {"notes": "x" * (3 * 1024 * 1024)}
    with pytest.raises(ApiError):
        await Body.parse_paced(json.dumps({"ciphers": [{}, entry]}).encode())
    with pytest.raises(ApiError):
        await Body.parse_paced(json.dumps({"folders": "y" * (3 * 1024 * 1024)}).encode())
