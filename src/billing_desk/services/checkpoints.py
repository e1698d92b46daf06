"""Signed checkpoints of the audit chain: signing keys, signing the chain head, checking notes.

A manager's Ed25519 private key lives in the OS keyring (or, by explicit choice, in a file only
they can read); its public key is registered in the database with its owner. A checkpoint is a
C2SP signed note (domain.notes) pinning the chain head: the database id, the last sequence number
and its hash. Checking a note is pure: it trusts only the keys the verifier brings, never keys
found in the data being verified. See docs/checkpoints.md.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import keyring
import platformdirs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringError, NoKeyringError
from sqlalchemy import select

from billing_desk.db.models import AuditChainHead, Checkpoint, DatabaseIdentity, SigningKey, User
from billing_desk.domain.errors import BadInput, EnvironmentFault, Refused
from billing_desk.domain.notes import (
    ORIGIN_PREFIX,
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
from billing_desk.domain.roles import Permission
from billing_desk.services.audit import database_id
from billing_desk.services.unit_of_work import UnitOfWork, Workspace
from billing_desk.services.verification import CheckpointClaim

KEYRING_SERVICE = "billing-desk signing key"
TRUSTED_KEYS_FILE = "trusted-keys"
SIGN_CHECKPOINTS = Permission.APPROVE_PAYMENTS  # "a manager signs audit checkpoints"
DOCS = "docs/checkpoints.md"


@dataclass(frozen=True)
class GeneratedKey:
    name: str
    vkey: str  # the public verifier key, to register and to hand to auditors
    stored_in: str  # where the private key went: the keyring backend, or the key file's path


@dataclass(frozen=True)
class KeyInfo:
    name: str
    key_id: str  # 8 hex digits
    vkey: str
    owner: str
    registered_at: datetime
    registered_by: str


@dataclass(frozen=True)
class CheckpointNote:
    sequence: int
    head_hash: str
    origin: str
    key_name: str
    note_text: str


@dataclass(frozen=True)
class TrustedKey:
    """A verifier key the verifier chose to trust, and where it was read from."""

    name: str
    key_id: bytes
    public_key: bytes
    source: str = ""

    @classmethod
    def from_vkey(cls, text: str, source: str = "") -> TrustedKey:
        key = parse_vkey(text)
        return cls(key.name, key.key_id, key.public_key, source)

    @property
    def vkey(self) -> str:
        return format_vkey(self.name, self.public_key)


@dataclass(frozen=True)
class CheckedNote:
    """What a note claims, which trusted keys vouch for it, and every problem found."""

    sequence: int
    head_hash: str
    origin: str
    key_names_verified: list[str]
    problems: list[str]

    @property
    def trusted(self) -> bool:
        return bool(self.key_names_verified) and not self.problems


# -- keys -----------------------------------------------------------------------------------


def generate_key(name: str, *, key_file: Path | None = None) -> GeneratedKey:
    """Make a new Ed25519 signing key named `name`; the private key goes into the OS keyring, or
    into a new file created readable by its owner only when `key_file` is given. Refuses to
    replace an existing key, and refuses (EnvironmentFault) when no safe keyring exists rather
    than falling back to plain text on its own."""
    check_key_name(name)
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    skey = format_skey(name, public, private.private_bytes_raw())
    vkey = format_vkey(name, public)
    if key_file is not None:
        _write_key_file(key_file, skey)
        return GeneratedKey(name, vkey, str(key_file))
    backend = usable_keyring()
    with _keyring_errors(backend):
        if backend.get_password(KEYRING_SERVICE, name) is not None:
            raise Refused(
                f"Your keyring already holds a signing key named '{name}'; billing-desk never "
                "replaces one. Pick another name."
            )
        backend.set_password(KEYRING_SERVICE, name, skey)
        kept = backend.get_password(KEYRING_SERVICE, name)
    if kept != skey:
        raise EnvironmentFault(
            f"The keyring {_describe(backend)} did not keep the key; pass --key-file PATH to "
            f"keep it in a file only you can read (see {DOCS})."
        )
    return GeneratedKey(name, vkey, f"the OS keyring ({_describe(backend)})")


def usable_keyring() -> KeyringBackend:
    """The OS keyring backend, or an EnvironmentFault saying there is none (a headless Linux
    machine has none) or that the configured one keeps secrets in plain text."""
    try:
        backend = keyring.get_keyring()
    except KeyringError as err:
        raise _no_keyring(err) from err
    first = backend
    if isinstance(backend, chainer.ChainerBackend):
        chained = backend.backends
        if not chained:
            raise _no_keyring(None)
        first = chained[0]
    if isinstance(first, (fail.Keyring, null.Keyring)):
        raise _no_keyring(None)
    if "plaintext" in type(first).__name__.lower():
        raise EnvironmentFault(
            f"The configured keyring {_describe(first)} keeps secrets in a plain-text file, "
            "which is no place for a private key; configure an OS keyring, or pass "
            f"--key-file PATH to choose that file yourself (see {DOCS})."
        )
    return backend


def _no_keyring(err: KeyringError | None) -> EnvironmentFault:
    why = "" if err is None or isinstance(err, NoKeyringError) else f" ({err})"
    return EnvironmentFault(
        f"No OS keyring is available on this machine{why}; pass --key-file PATH to keep the key "
        f"in a file only you can read (see {DOCS})."
    )


@contextmanager
def _keyring_errors(backend: KeyringBackend) -> Iterator[None]:
    """Turn a keyring backend's failure into one sentence for the user."""
    try:
        yield
    except NoKeyringError as err:
        raise _no_keyring(err) from err
    except KeyringError as err:
        raise EnvironmentFault(
            f"The keyring {_describe(backend)} failed ({err or type(err).__name__}); unlock it "
            f"and try again, or pass --key-file PATH (see {DOCS}).",
            retryable=True,
        ) from err


def _describe(backend: KeyringBackend) -> str:
    kind = type(backend)
    return f"{kind.__module__}.{kind.__name__}"


def _write_key_file(path: Path, skey: str) -> None:
    """Create `path` readable and writable by its owner only; never overwrite anything."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise BadInput(
            f"{path} already exists; billing-desk never overwrites a key file. Choose a new path."
        ) from None
    except OSError as err:
        raise BadInput(f"Cannot create the key file {path} ({err.strerror}).") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(descriptor, 0o600)  # whatever the umask did
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(skey + "\n")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Signer:
    name: str
    key_id: bytes
    public_key: bytes
    private: Ed25519PrivateKey


def _load_signer(name: str | None, key_file: Path | None) -> _Signer:
    """The private key named `name`, from `key_file` or else from the OS keyring, checked
    against its own key id."""
    if key_file is not None:
        text = _read_key_file(key_file)
        origin = f"the key file {key_file}"
    else:
        if name is None:
            raise BadInput("Name the signing key with --key NAME.")
        backend = usable_keyring()
        with _keyring_errors(backend):
            found = backend.get_password(KEYRING_SERVICE, name)
        if found is None:
            raise BadInput(
                f"There is no signing key named '{name}' in your OS keyring; make one with "
                f"`billing-desk audit key generate {name}`, or pass --key-file PATH."
            )
        text = found
        origin = "your OS keyring"
    signer = parse_skey(text)
    if name is not None and signer.name != name:
        raise BadInput(f"The private key in {origin} is named '{signer.name}', not '{name}'.")
    private = Ed25519PrivateKey.from_private_bytes(signer.seed)
    public = private.public_key().public_bytes_raw()
    if key_id(signer.name, public) != signer.key_id:
        raise BadInput(
            f"The private key '{signer.name}' in {origin} is damaged: its key id does not match "
            "the key."
        )
    return _Signer(signer.name, signer.key_id, public, private)


def _read_key_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BadInput(
                f"The key file {path} can be read by others (mode {stat.filemode(mode)}); make it "
                f"private with `chmod 600 {path}` first."
            )
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"The key file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"Cannot read the key file {path} ({err}).") from None


def register_key(workspace: Workspace, vkey_text: str, owner: str | None = None) -> KeyInfo:
    """Register a checkpoint signer's public key under its name, owned by `owner` (default: the
    acting user, who must be allowed to sign checkpoints). Refuses a malformed key, a name or
    key already registered, and an owner who is not an active user."""
    key = parse_vkey(vkey_text)

    def operation(unit: UnitOfWork) -> KeyInfo:
        actor = unit.require(SIGN_CHECKPOINTS)
        session = unit.session
        owner_name = (owner or actor.name).strip()
        if not session.scalar(select(User.active).where(User.name == owner_name)):
            raise Refused(
                f"'{owner_name}' is not an active user of this database; a key's owner must be."
            )
        taken = session.scalars(
            select(SigningKey).where(
                (SigningKey.key_name == key.name) | (SigningKey.public_key == key.public_key.hex())
            )
        ).first()
        if taken is not None:
            what = "a key named" if taken.key_name == key.name else "this public key, as"
            raise Refused(
                f"There is already {what} '{taken.key_name}' (owner {taken.owner}); a registered "
                "key is never replaced, so generate a key with a new name."
            )
        row = SigningKey(
            key_name=key.name,
            public_key=key.public_key.hex(),
            owner=owner_name,
            registered_at=unit.now,
            registered_by=actor.name,
        )
        session.add(row)
        return _key_info(row)

    return workspace.write(operation, action="audit.key.register")


def list_keys(workspace: Workspace) -> list[KeyInfo]:
    """Every registered signing key, by name."""

    def operation(unit: UnitOfWork) -> list[KeyInfo]:
        unit.require(Permission.READ)
        rows = unit.session.scalars(select(SigningKey).order_by(SigningKey.key_name))
        return [_key_info(row) for row in rows]

    return workspace.read(operation)


def _key_info(row: SigningKey) -> KeyInfo:
    public = bytes.fromhex(row.public_key)
    return KeyInfo(
        row.key_name,
        key_id(row.key_name, public).hex(),
        format_vkey(row.key_name, public),
        row.owner,
        row.registered_at,
        row.registered_by,
    )


# -- signing --------------------------------------------------------------------------------


def sign_checkpoint(
    workspace: Workspace, key_name: str | None = None, *, key_file: Path | None = None
) -> CheckpointNote:
    """Seal the chain, then sign its head with the private key `key_name` (from the OS keyring,
    or from `key_file`; with neither name nor file, the acting user's one registered key) and
    store the note. Refuses a key that is not registered here with the same public key, a key
    owned by someone else, and an empty chain."""
    if key_name is None and key_file is None:
        key_name = _own_key_name(workspace)
    signer = _load_signer(key_name, key_file)
    workspace.seal()

    def operation(unit: UnitOfWork) -> CheckpointNote:
        actor = unit.require(SIGN_CHECKPOINTS)
        session = unit.session
        registered = session.scalars(
            select(SigningKey).where(SigningKey.key_name == signer.name)
        ).one_or_none()
        if registered is None:
            raise Refused(
                f"The key '{signer.name}' is not registered in this database; a signer must be: "
                "register its verifier key with `billing-desk audit key register` first."
            )
        if registered.public_key != signer.public_key.hex():
            raise Refused(
                f"Your private key '{signer.name}' does not match the public key registered under "
                "that name; it cannot sign for this database."
            )
        if registered.owner != actor.name:
            raise Refused(
                f"The key '{signer.name}' belongs to {registered.owner}; only its owner signs "
                "with it."
            )
        head = session.scalars(select(AuditChainHead).where(AuditChainHead.id == 1)).one()
        if head.last_sequence == 0:
            raise Refused("The audit trail is still empty; there is no history to sign yet.")
        database_id = session.scalars(select(DatabaseIdentity.database_id)).one()
        origin = origin_for(database_id)
        body = build_body(origin, head.last_sequence, head.last_hash)
        signature = signer.private.sign(body.encode("utf-8"))
        note = format_note(body, [NoteSignature(signer.name, signer.key_id, signature)])
        session.add(
            Checkpoint(
                sequence=head.last_sequence,
                head_hash=head.last_hash,
                key_name=signer.name,
                note=note,
                signed_by=actor.name,
                created_at=unit.now,
            )
        )
        return CheckpointNote(head.last_sequence, head.last_hash, origin, signer.name, note)

    return workspace.write(operation, action="audit.checkpoint")


def _own_key_name(workspace: Workspace) -> str:
    def operation(unit: UnitOfWork) -> str:
        actor = unit.require(SIGN_CHECKPOINTS)
        names = list(
            unit.session.scalars(
                select(SigningKey.key_name)
                .where(SigningKey.owner == actor.name)
                .order_by(SigningKey.key_name)
            )
        )
        if len(names) == 1:
            return names[0]
        if not names:
            raise BadInput(
                f"{actor.name} has no registered signing key; generate one with `billing-desk "
                "audit key generate NAME` and register it with `billing-desk audit key register`."
            )
        raise BadInput(
            f"{actor.name} has several signing keys ({', '.join(names)}); choose one with "
            "--key NAME."
        )

    return workspace.read(operation)


# -- checking (offline) ---------------------------------------------------------------------


def claims_of_notes(
    workspace: Workspace,
    notes: Sequence[Path],
    trusted: Sequence[TrustedKey],
    *,
    label: Callable[[Path], str] = str,
) -> list[CheckpointClaim]:
    """Each checkpoint note read and checked against the verifier's trusted keys and this
    database's identity: what a verification holds the chain to (`label` names the note in its
    findings)."""
    identity = database_id(workspace)
    claims = []
    for path in notes:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BadInput(f"Cannot read the checkpoint note {path} ({err}).") from None
        checked = check_note(text, trusted, database_id=identity)
        claims.append(
            CheckpointClaim(
                label(path), checked.sequence, checked.head_hash, tuple(checked.problems)
            )
        )
    return claims


def check_note(
    note_text: str, trusted: Sequence[TrustedKey], *, database_id: str | None
) -> CheckedNote:
    """Check a checkpoint note's signatures against the keys the verifier trusts (by name and
    key id) and, given `database_id`, that it names that database. Touches no database.

    Raises BadInput when the text is not a signed checkpoint at all; everything else is a
    problem in the result: a failing signature, no signature by a trusted key, another database.
    """
    note = parse_note(note_text)
    problems: list[str] = []
    if not note.origin.startswith(ORIGIN_PREFIX):
        problems.append(f"The note's origin '{note.origin}' is not a billing-desk database.")
    elif database_id and note.origin != origin_for(database_id):
        problems.append(
            f"The note is for database {note.origin.removeprefix(ORIGIN_PREFIX)}, not this one "
            f"({database_id})."
        )
    by_id: dict[tuple[str, bytes], list[TrustedKey]] = {}
    for key in trusted:
        by_id.setdefault((key.name, key.key_id), []).append(key)
    message = note.body.encode("utf-8")
    verified: list[str] = []
    failed = False
    untrusted: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for signature in note.signatures:
        identity = (signature.name, signature.key_id)
        if identity in seen:
            continue
        seen.add(identity)
        candidates = by_id.get(identity)
        if not candidates:
            untrusted.append(signature.name)
        elif any(_verifies(k.public_key, signature.signature, message) for k in candidates):
            verified.append(signature.name)
        else:
            failed = True
            problems.append(
                f"The signature by {signature.name} fails: the note was changed after it was "
                "signed, or the signature is damaged."
            )
    if not verified and not failed:
        names = ", ".join(untrusted)
        what = "a key" if len(untrusted) == 1 else "keys"
        problems.append(
            f"The note is signed by {names}, {what} this verifier does not trust; trust a key "
            "with --trust-key FILE or your trusted-keys file, never because a database lists it."
        )
    return CheckedNote(note.size, note.hash_hex, note.origin, verified, problems)


def _verifies(public_key: bytes, signature: bytes, message: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def trusted_keys_path() -> Path:
    """The verifier's own list of trusted keys: `trusted-keys` in the user's config folder."""
    folder = Path(platformdirs.user_config_dir("billing-desk", appauthor=False))
    return folder / TRUSTED_KEYS_FILE


def load_trusted_keys(paths: Sequence[Path]) -> list[TrustedKey]:
    """The keys in each file of `paths` (--trust-key; each must exist) and in the verifier's
    trusted-keys file when there is one: one verifier key per line; blank lines and lines
    starting with '#' are skipped. A line that is not a verifier key is refused, naming it."""
    keys: list[TrustedKey] = []
    for path in paths:
        if not path.exists():
            raise BadInput(f"The trusted key file {path} does not exist.")
        keys += _read_trusted(path)
    config = trusted_keys_path()
    if config.exists():
        keys += _read_trusted(config)
    unique: dict[tuple[str, bytes, bytes], TrustedKey] = {}
    for key in keys:
        unique.setdefault((key.name, key.key_id, key.public_key), key)
    return list(unique.values())


def _read_trusted(path: Path) -> list[TrustedKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"Cannot read the trusted key file {path} ({err}).") from None
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        clean = line.strip()
        if not clean or clean.startswith("#"):
            continue
        try:
            keys.append(TrustedKey.from_vkey(clean, f"{path}:{number}"))
        except BadInput as err:
            raise BadInput(f"{path} line {number}: {err}") from None
    return keys


__all__ = [
    "KEYRING_SERVICE",
    "CheckedNote",
    "CheckpointNote",
    "GeneratedKey",
    "KeyInfo",
    "TrustedKey",
    "check_note",
    "claims_of_notes",
    "generate_key",
    "list_keys",
    "load_trusted_keys",
    "register_key",
    "sign_checkpoint",
    "trusted_keys_path",
    "usable_keyring",
]
