"""vaultapi.body: the EncString check and the paced reading of large JSON bodies."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import pytest

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


async def test_paced_parse_reads_what_json_reads_and_lets_others_run() -> None:
    """Measured in CPU time, the garbage collector off: a busy machine and GC pauses are not the
    parser's doing (tests/vaultapi/test_large_vaults.py measures the same way)."""
    raw = _import_body(20_000)
    expected = json.loads(raw)
    gc.collect()
    gc.disable()
    try:
        runs = []
        for _ in range(3):
            started = time.process_time()
            json.loads(raw)
            runs.append(time.process_time() - started)
        in_one_call = min(runs)

        gaps: list[float] = []
        done = False

        async def ticker() -> None:
            last = time.process_time()
            while not done:
                await asyncio.sleep(0)
                now = time.process_time()
                gaps.append(now - last)
                last = now

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        body = await Body.parse_paced(raw)
        done = True
        await ticking
    finally:
        gc.enable()
    assert body.raw == expected
    # the others got turns throughout, not one after a single long parse
    assert len(gaps) > 5 and max(gaps) < in_one_call / 2, (in_one_call, max(gaps), len(gaps))


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
