"""Signed notes and checkpoints (domain.notes), pinned by golden vectors.

Two sets of vectors: golang.org/x/mod/sumdb/note's own test vectors (note_test.go), the reference
implementation of C2SP signed-note, which shows we interoperate; and ours, a checkpoint signed
with a fixed seed. Ed25519 is deterministic, so whole notes are literals, computed once and
written in by hand: do not "fix" them if a test fails, find what changed the bytes.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from billing_desk.domain.errors import BadInput
from billing_desk.domain.notes import (
    MAX_NOTE_BYTES,
    NoteSignature,
    build_body,
    check_key_name,
    format_note,
    format_skey,
    format_vkey,
    key_id,
    origin_for,
    parse_note,
    parse_skey,
    parse_vkey,
)

# -- golang.org/x/mod/sumdb/note, note_test.go --------------------------------------------------

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
    "wnWLox33WWd1RvMc+QQ=\n"
)

# -- ours -------------------------------------------------------------------------------------

SEED = bytes(range(1, 33))  # 0x01 .. 0x20
NAME = "manager-ann-2026"
PUBLIC_HEX = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
KEY_ID_HEX = "dc54078d"
VKEY = "manager-ann-2026+dc54078d+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk"
SKEY = "PRIVATE+KEY+manager-ann-2026+dc54078d+AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
DATABASE_ID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
HEAD_HASH = (
    "64ea1490cd8f54cfad0219666a2c3548408dcc5f3e42821dcff55440a1213282"  # SHA-256 of a phrase
)
BODY = (
    "billing-desk/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9\n"
    "42\n"
    "ZOoUkM2PVM+tAhlmaiw1SECNzF8+QoIdz/VUQKEhMoI=\n"
)
NOTE = (
    BODY + "\n"
    "— manager-ann-2026 3FQHjUAq5UI3dsyJvmUNRcnoYnS0GQZKCBy0sy9u44ApK0EjWZDKr55lJckad+Eq+an4ExQ67IA"
    "uhJtIF+wQ2BPccQo=\n"
)


def _sign(seed: bytes, name: str, body: str) -> str:
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes_raw()
    return format_note(
        body, [NoteSignature(name, key_id(name, public), private.sign(body.encode()))]
    )


# -- interoperability with the reference implementation ----------------------------------------


def test_go_verifier_key_parses_with_its_key_id() -> None:
    key = parse_vkey(GO_VKEY)
    assert key.name == "PeterNeumann"
    assert key.key_id.hex() == "c74f20a3"
    assert key_id(key.name, key.public_key).hex() == "c74f20a3"
    assert format_vkey(key.name, key.public_key) == GO_VKEY


def test_go_signer_key_derives_the_verifier_key_and_formats_back() -> None:
    signer = parse_skey(GO_SKEY)  # its base64 contains '+', like many keys do
    public = Ed25519PrivateKey.from_private_bytes(signer.seed).public_key().public_bytes_raw()
    assert public == parse_vkey(GO_VKEY).public_key
    assert signer.key_id == key_id("PeterNeumann", public)
    assert format_skey("PeterNeumann", public, signer.seed) == GO_SKEY


def test_signing_the_go_text_gives_the_go_note_byte_for_byte() -> None:
    seed = parse_skey(GO_SKEY).seed
    assert _sign(seed, "PeterNeumann", GO_TEXT) == GO_TEXT + "\n" + GO_PETER_SIG


def test_go_note_with_two_signatures_parses_without_being_a_checkpoint_error() -> None:
    # The Go text is not a checkpoint (its second line is no tree size): the signature block
    # parses, the body is refused with a sentence.
    with pytest.raises(BadInput, match="tree size"):
        parse_note(GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG)


# -- our golden checkpoint ----------------------------------------------------------------------


def test_golden_key_id_and_key_texts() -> None:
    public = bytes.fromhex(PUBLIC_HEX)
    assert Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw() == public
    assert key_id(NAME, public).hex() == KEY_ID_HEX
    assert format_vkey(NAME, public) == VKEY
    assert format_skey(NAME, public, SEED) == SKEY
    assert parse_vkey(VKEY).public_key == public
    assert parse_skey(SKEY).seed == SEED


def test_golden_body_and_note() -> None:
    assert build_body(origin_for(DATABASE_ID), 42, HEAD_HASH) == BODY
    assert _sign(SEED, NAME, BODY) == NOTE


def test_golden_note_parses_back() -> None:
    note = parse_note(NOTE)
    assert note.body == BODY
    assert note.origin == "billing-desk/" + DATABASE_ID
    assert note.size == 42
    assert note.hash_hex == HEAD_HASH
    assert note.extensions == ()
    [signature] = note.signatures
    assert signature.name == NAME
    assert signature.key_id.hex() == KEY_ID_HEX
    assert len(signature.signature) == 64


def test_extension_lines_are_kept_and_signed() -> None:
    body = build_body("billing-desk/x", 7, HEAD_HASH, ["time 1760000000"])
    note = parse_note(_sign(SEED, NAME, body))
    assert note.extensions == ("time 1760000000",)
    assert note.body == body


def test_signer_key_repr_hides_the_seed() -> None:
    assert SEED.hex() not in repr(parse_skey(SKEY))
    assert repr(SEED) not in repr(parse_skey(SKEY))


@given(
    origin=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_characters="\x7f"),
        min_size=1,
        max_size=60,
    ),
    size=st.integers(min_value=0, max_value=2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_any_body_round_trips(origin: str, size: int, root: bytes) -> None:
    body = build_body(origin, size, root.hex())
    note = parse_note(body + "\n" + f"— {NAME} " + base64.b64encode(b"\0" * 68).decode() + "\n")
    assert (note.origin, note.size, note.hash_hex, note.body) == (origin, size, root.hex(), body)


def test_build_body_refuses_what_cannot_be_a_checkpoint() -> None:
    with pytest.raises(ValueError, match="hex"):
        build_body("billing-desk/x", 1, HEAD_HASH.upper())
    with pytest.raises(ValueError, match="origin"):
        build_body("two\nlines", 1, HEAD_HASH)
    with pytest.raises(ValueError, match="size"):
        build_body("billing-desk/x", -1, HEAD_HASH)


# -- malformed notes --------------------------------------------------------------------------

SIG_LINE = NOTE[len(BODY) + 1 :]
SIG_B64 = SIG_LINE.split(" ")[2].rstrip("\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BODY + SIG_LINE, "no blank line"),
        (BODY, "no blank line"),
        (BODY + "\n", "cut short"),
        (NOTE.rstrip("\n"), "cut short"),
        (NOTE + "trailing words\n", "em dash"),
        (BODY + "\n" + SIG_LINE.replace("—", "-"), "em dash"),
        (BODY + "\n" + f"— {NAME} not*base64\n", "base64"),
        (BODY + "\n" + f"— {NAME} {SIG_B64[:-2]}\n", "base64"),
        (BODY + "\n" + f"— {NAME} AAAA\n", "4-byte key id"),
        (BODY + "\n" + f"— {NAME}\n", "valid key"),
        (BODY + "\n" + f"— a+b {SIG_B64}\n", "valid key"),
        (NOTE.replace("\n", "\r\n"), "carriage returns"),
        ("\x01" + NOTE, "control characters"),
        (NOTE.replace("\n42\n", "\n042\n"), "tree size"),
        (NOTE.replace("\n42\n", "\n+42\n"), "tree size"),
        (NOTE.replace("\n42\n", "\n-1\n"), "tree size"),
        (NOTE.replace("\n42\n", "\n99999999999999999999\n"), "tree size"),
        (NOTE.replace("ZOoUkM2P", "ZOoU"), "32-byte hash"),
        (NOTE.replace("\n42\n", "\n"), "three lines"),
        (BODY + "extra\n\nmore\n" + "\n" + SIG_LINE, "empty line"),
        (BODY + "\n" + SIG_LINE * 101, "at most 100"),
    ],
)
def test_malformed_notes_are_refused_with_a_sentence(text: str, expected: str) -> None:
    with pytest.raises(BadInput, match=expected):
        parse_note(text)


def test_non_canonical_base64_is_refused() -> None:
    # 'ZOoUkM2PVM+tAhlmaiw1SECNzF8+QoIdz/VUQKEhMoI=' ends in 'I='; 'J=' decodes to the same bytes
    # with a stray bit set, a second spelling of the same hash.
    with pytest.raises(BadInput, match="32-byte hash"):
        parse_note(NOTE.replace("MoI=", "MoJ="))


def test_oversized_note_is_refused() -> None:
    padding = "".join(f"ext {i}\n" for i in range(MAX_NOTE_BYTES // 6))
    with pytest.raises(BadInput, match="64 KiB"):
        parse_note(BODY + padding + "\n" + SIG_LINE)


def test_many_multibyte_characters_count_as_bytes() -> None:
    heavy = "é" * (MAX_NOTE_BYTES // 2)  # fewer characters than the limit, more bytes
    with pytest.raises(BadInput, match="64 KiB"):
        parse_note(BODY + heavy + "\n\n" + SIG_LINE)


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("manager", "not a verifier key"),
        (VKEY.replace("+dc54078d+", "+dc54078e+"), "does not match"),
        (VKEY.replace("+dc54078d+", "+DC54078D+"), "malformed key id"),
        (VKEY.replace("+AXm1", "+Anm1"), "Ed25519"),  # algorithm byte 0x02, not 0x01
        (VKEY[:-1], "base64"),
        (VKEY[:-4], "33 bytes"),
        ("bad name+dc54078d+AXm1", "cannot name a signing key"),
        (SKEY, "private key, not a verifier key"),
    ],
)
def test_malformed_verifier_keys_are_refused(text: str, expected: str) -> None:
    with pytest.raises(BadInput, match=expected):
        parse_vkey(text)


def test_a_key_go_rejects_for_its_length_is_refused() -> None:
    # From note_test.go; its 'EY==' also leaves stray bits, which strict base64 refuses first.
    with pytest.raises(BadInput, match="base64"):
        parse_vkey("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VKEY, "does not start PRIVATE"),
        ("PRIVATE+KEY+manager", "malformed"),
        (SKEY[:-1], "base64"),
        (SKEY[:-4], "33 bytes"),
    ],
)
def test_malformed_private_keys_are_refused_without_quoting_them(text: str, expected: str) -> None:
    with pytest.raises(BadInput, match=expected) as caught:
        parse_skey(text)
    assert "AQECAwQFBgcICQoLDA0ODxAREhMU" not in str(caught.value)


@pytest.mark.parametrize("name", ["a", "x" * 100, "manager-ann-2026", "zoë@billing.example"])
def test_key_names_allowed(name: str) -> None:
    assert check_key_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 101, "ann smith", "ann+2026", "tab\there", "nbsp\u00a0"]
)
def test_key_names_refused(name: str) -> None:
    with pytest.raises(BadInput, match="cannot name a signing key"):
        check_key_name(name)
