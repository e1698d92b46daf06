"""Signed notes and checkpoints as text: the formats of C2SP signed-note and tlog-checkpoint.

Specifications: https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint. A checkpoint
body is three lines, each ending in "\\n": the origin (`billing-desk/<database id>`), the tree
size in decimal (our chain's last sequence number) and the root hash as standard base64 of its 32
bytes (our chain head's link hash); extension lines may follow and are kept. A signed note is
the body, a blank line, and one line per signature: "— <key name> <base64(key id || signature)>".
An Ed25519 key id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key).

Pure text and bytes: signing and verifying (cryptography) live in services.checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from billing_desk.domain.errors import BadInput

ORIGIN_PREFIX = "billing-desk/"
ED25519 = 0x01
ED25519_KEY_BYTES = 32
KEY_ID_BYTES = 4
MAX_KEY_NAME = 100
MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"

_HASH_HEX = re.compile(r"[0-9a-f]{64}")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_MAX_SIZE = 2**63 - 1  # the chain's sequence is a signed 64-bit integer


class NoteSignature(NamedTuple):
    """One signature line: the signer's key name, 4-byte key id and raw signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    """A parsed signed checkpoint; nothing in it has been verified yet."""

    body: str  # the signed text, final newline included
    origin: str
    size: int
    hash_hex: str
    extensions: tuple[str, ...]
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifierKey:
    """A public key as named in notes: `<name>+<key id hex>+<base64(0x01 || public key)>`."""

    name: str
    key_id: bytes
    public_key: bytes

    @property
    def text(self) -> str:
        return format_vkey(self.name, self.public_key)


@dataclass(frozen=True)
class SignerKey:
    """A private key as parsed from its text; its key id is not yet checked against the seed,
    which takes Ed25519 arithmetic (services.checkpoints does it)."""

    name: str
    key_id: bytes
    seed: bytes = field(repr=False)


# -- names and ids --------------------------------------------------------------------------


def check_key_name(name: str) -> str:
    """`name` when it can name a signing key: 1 to 100 characters, no spaces, no '+'."""
    if not _is_note_name(name) or len(name) > MAX_KEY_NAME:
        raise BadInput(
            f"'{name}' cannot name a signing key; use 1 to {MAX_KEY_NAME} characters without "
            "spaces or '+', e.g. 'manager-ann-2026'."
        )
    return name


def _is_note_name(name: str) -> bool:
    """The signed-note rule for key names: non-empty, no Unicode spaces, no '+', printable."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    )


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    if len(public_key) != ED25519_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(public_key)}")
    material = name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key
    return hashlib.sha256(material).digest()[:KEY_ID_BYTES]


def origin_for(database_id: str) -> str:
    """The origin line naming one billing database."""
    return f"{ORIGIN_PREFIX}{database_id}"


# -- verifier and signer keys -----------------------------------------------------------------


def format_vkey(name: str, public_key: bytes) -> str:
    check_key_name(name)
    encoded = _b64(bytes([ED25519]) + public_key)
    return f"{name}+{key_id(name, public_key).hex()}+{encoded}"


def parse_vkey(text: str) -> VerifierKey:
    """Parse a verifier key; refuses other algorithms, wrong lengths and a key id that does not
    belong to the name and key."""
    if text.strip().startswith(PRIVATE_KEY_PREFIX):
        raise BadInput(
            "This is a private key, not a verifier key: keep it secret, and use the verifier key "
            "(NAME+ID+KEY) that `billing-desk audit key generate` printed."
        )
    # The key's base64 may itself contain '+': split off the name and id only.
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise BadInput(
            f"'{_show(text)}' is not a verifier key; one looks like "
            "NAME+8-hex-digit-id+base64-key, as `billing-desk audit key generate` prints it."
        )
    name, id_hex, encoded = parts
    check_key_name(name)
    raw = _key_material(encoded, f"verifier key {name}")
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise BadInput(f"The verifier key {name} has a malformed key id '{id_hex}'.")
    public_key = raw[1:]
    if key_id(name, public_key).hex() != id_hex:
        raise BadInput(
            f"The verifier key {name} is damaged: its key id {id_hex} does not match its name "
            "and key."
        )
    return VerifierKey(name, bytes.fromhex(id_hex), public_key)


def format_skey(name: str, public_key: bytes, seed: bytes) -> str:
    """The private key's text; the key id is that of the public key the seed derives."""
    check_key_name(name)
    if len(seed) != ED25519_KEY_BYTES:
        raise ValueError(f"an Ed25519 seed has 32 bytes, not {len(seed)}")
    encoded = _b64(bytes([ED25519]) + seed)
    return f"{PRIVATE_KEY_PREFIX}{name}+{key_id(name, public_key).hex()}+{encoded}"


def parse_skey(text: str) -> SignerKey:
    """Parse a private key's text. Messages never quote the key itself."""
    clean = text.strip()
    if not clean.startswith(PRIVATE_KEY_PREFIX):
        raise BadInput("This is not a billing-desk private key: it does not start PRIVATE+KEY+.")
    parts = clean[len(PRIVATE_KEY_PREFIX) :].split("+", 2)
    if len(parts) != 3:
        raise BadInput("The private key is malformed: it must read PRIVATE+KEY+NAME+ID+KEY.")
    name, id_hex, encoded = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise BadInput(f"The private key {name} has a malformed key id.")
    seed = _key_material(encoded, f"private key {name}", quote=False)[1:]
    return SignerKey(name, bytes.fromhex(id_hex), seed)


def _key_material(encoded: str, what: str, *, quote: bool = True) -> bytes:
    raw = _strict_b64(encoded)
    shown = f" '{_show(encoded)}'" if quote else ""
    if raw is None:
        raise BadInput(f"The {what} is not valid base64{shown}.")
    if len(raw) != 1 + ED25519_KEY_BYTES or raw[0] != ED25519:
        raise BadInput(
            f"The {what} is not an Ed25519 key: expected 33 bytes starting with 0x01, got "
            f"{len(raw)} bytes."
        )
    return raw


# -- notes ----------------------------------------------------------------------------------


def build_body(origin: str, size: int, hash_hex: str, extensions: Iterable[str] = ()) -> str:
    """The checkpoint body (the signed text) for a chain of `size` entries ending in `hash_hex`."""
    if not origin or not _is_line(origin):
        raise ValueError("the origin must be one non-empty line of printable text")
    if not 0 <= size <= _MAX_SIZE:
        raise ValueError(f"the tree size {size} is out of range")
    if not _HASH_HEX.fullmatch(hash_hex):
        raise ValueError("the root hash must be 64 lower-case hex digits")
    lines = [origin, str(size), _b64(bytes.fromhex(hash_hex))]
    for extra in extensions:
        if not extra or not _is_line(extra):
            raise ValueError("an extension line must be one non-empty line of printable text")
        lines.append(extra)
    return "".join(f"{line}\n" for line in lines)


def format_signature_line(signature: NoteSignature) -> str:
    if not _is_note_name(signature.name) or len(signature.key_id) != KEY_ID_BYTES:
        raise ValueError("a signature needs a valid key name and a 4-byte key id")
    encoded = _b64(signature.key_id + signature.signature)
    return f"{SIGNATURE_PREFIX}{signature.name} {encoded}\n"


def format_note(body: str, signatures: Sequence[NoteSignature]) -> str:
    """The signed note: body, a blank line, one line per signature."""
    if not body.endswith("\n") or not signatures:
        raise ValueError("a signed note needs a body ending in a newline and a signature")
    return body + "\n" + "".join(format_signature_line(s) for s in signatures)


def parse_note(text: str) -> Note:
    """Parse a signed checkpoint note; refuses, with a sentence saying what is wrong, anything
    that is not one. Signatures are parsed, not verified."""
    if len(text) > MAX_NOTE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise BadInput(
            f"This checkpoint note is larger than {MAX_NOTE_BYTES // 1024} KiB; a real one is a "
            "few hundred bytes, so this is not a checkpoint note."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("This checkpoint note is not valid UTF-8 text.") from None
    if "\r" in text:
        raise BadInput(
            "This checkpoint note contains carriage returns (Windows line endings?); a note's "
            "bytes must be kept exactly as signed, with plain newlines."
        )
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise BadInput("This checkpoint note contains control characters; it is not a note.")
    split = text.rfind("\n\n")
    if split < 0:
        raise BadInput(
            "This is not a signed note: there is no blank line between its text and its "
            "signature lines."
        )
    body, block = text[: split + 1], text[split + 2 :]
    if not block or not block.endswith("\n"):
        raise BadInput(
            "This signed note is cut short: after the blank line there must be signature lines, "
            "the last one ending in a newline."
        )
    signatures = tuple(
        _parse_signature_line(line, number)
        for number, line in enumerate(block[:-1].split("\n"), start=1)
    )
    if len(signatures) > MAX_SIGNATURES:
        raise BadInput(
            f"This signed note has {len(signatures)} signature lines; at most {MAX_SIGNATURES} "
            "are accepted."
        )
    origin, size, hash_hex, extensions = _parse_body(body)
    return Note(body, origin, size, hash_hex, extensions, signatures)


def _parse_body(body: str) -> tuple[str, int, str, tuple[str, ...]]:
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise BadInput(
            "This note is not a checkpoint: its text must have at least three lines (origin, "
            "tree size, root hash)."
        )
    for number, line in enumerate(lines, start=1):
        if not line:
            raise BadInput(f"This checkpoint's text has an empty line (line {number}).")
    origin, size_text, hash_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text) or int(size_text) > _MAX_SIZE:
        raise BadInput(
            f"This checkpoint's second line must be the tree size in decimal, not "
            f"'{_show(size_text)}'."
        )
    root = _strict_b64(hash_text)
    if root is None or len(root) != 32:
        raise BadInput(
            f"This checkpoint's third line must be a 32-byte hash in base64, not "
            f"'{_show(hash_text)}'."
        )
    return origin, int(size_text), root.hex(), tuple(extensions)


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    where = f"signature line {number}"
    if not line.startswith(SIGNATURE_PREFIX):
        raise BadInput(
            f"This signed note's {where} does not start with an em dash and a space ('— '); "
            "every line after the blank line must be a signature."
        )
    name, sep, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not sep or not _is_note_name(name):
        raise BadInput(f"This signed note's {where} does not name a valid key.")
    raw = _strict_b64(encoded)
    if raw is None:
        raise BadInput(f"This signed note's {where} (by {name}) is not valid base64.")
    if len(raw) <= KEY_ID_BYTES:
        raise BadInput(
            f"This signed note's {where} (by {name}) is too short to hold a 4-byte key id and a "
            "signature."
        )
    return NoteSignature(name, raw[:KEY_ID_BYTES], raw[KEY_ID_BYTES:])


# -- helpers --------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _strict_b64(text: str) -> bytes | None:
    """Standard base64 with padding, in its one canonical spelling; None otherwise."""
    if not text or not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if _b64(raw) == text else None


def _is_line(text: str) -> bool:
    return "\n" not in text and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _show(text: str, limit: int = 40) -> str:
    """Part of what the user gave, for a message: short, and on one line."""
    flat = text.replace("\n", " ")
    return flat if len(flat) <= limit else flat[:limit] + "…"


__all__ = [
    "ED25519",
    "MAX_KEY_NAME",
    "MAX_NOTE_BYTES",
    "ORIGIN_PREFIX",
    "Note",
    "NoteSignature",
    "SignerKey",
    "VerifierKey",
    "build_body",
    "check_key_name",
    "format_note",
    "format_signature_line",
    "format_skey",
    "format_vkey",
    "key_id",
    "origin_for",
    "parse_note",
    "parse_skey",
    "parse_vkey",
]
