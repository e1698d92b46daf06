"""Signing keys, signed checkpoints and checking notes (services.checkpoints), on both backends.

Every test chooses its keyring backend explicitly: an in-memory one (tests/keyring_backend.py),
or keyring's fail backend, which is what a headless Linux machine gets. The verifier's config
folder points into the test's temporary folder, so a real trusted-keys file is never read.
"""

from __future__ import annotations

import base64
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import keyring
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from keyring.backend import KeyringBackend
from keyring.backends import fail, null
from sqlalchemy import select

from billing_desk.db.models import AuditChainHead, AuditEntry, Checkpoint, DatabaseIdentity
from billing_desk.domain.errors import BadInput, EnvironmentFault, PermissionDenied, Refused
from billing_desk.domain.notes import format_vkey, parse_note, parse_skey, parse_vkey
from billing_desk.services.checkpoints import (
    KEYRING_SERVICE,
    TrustedKey,
    check_note,
    generate_key,
    list_keys,
    load_trusted_keys,
    register_key,
    sign_checkpoint,
    trusted_keys_path,
)
from billing_desk.services.unit_of_work import UnitOfWork, Workspace
from billing_desk.services.users import add_user
from tests.conftest import Database
from tests.keyring_backend import ForgetfulKeyring, MemoryKeyring, PlaintextKeyring
from tests.support import seed_users


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    return folder


@contextmanager
def _use_keyring(backend: KeyringBackend) -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    backend = MemoryKeyring()
    with _use_keyring(backend):
        yield backend


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """What keyring picks on a headless Linux machine: the backend that fails every call."""
    with _use_keyring(fail.Keyring()):
        yield


@pytest.fixture
def manager(database: Database) -> Workspace:
    seed_users(database.workspace("admin"))
    return database.workspace("manager")


def _database_id(workspace: Workspace) -> str:
    return workspace.read(
        lambda unit: unit.session.scalars(select(DatabaseIdentity.database_id)).one()
    )


def _head(workspace: Workspace) -> tuple[int, str]:
    def operation(unit: UnitOfWork) -> tuple[int, str]:
        head = unit.session.scalars(select(AuditChainHead)).one()
        return head.last_sequence, head.last_hash

    return workspace.read(operation)


def _ready_signer(manager: Workspace, name: str = "manager-2026") -> str:
    """Generate `name` into the keyring, register it for the manager; its verifier key."""
    generated = generate_key(name)
    register_key(manager, generated.vkey)
    return generated.vkey


def _other_vkey(name: str = "stranger") -> str:
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return format_vkey(name, public)


# -- generating keys ------------------------------------------------------------------------------


def test_generate_keeps_the_private_key_in_the_keyring(memory_keyring: MemoryKeyring) -> None:
    generated = generate_key("manager-2026")
    skey = memory_keyring.secrets[(KEYRING_SERVICE, "manager-2026")]
    seed = parse_skey(skey).seed
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert parse_vkey(generated.vkey).public_key == public
    assert generated.name == "manager-2026"
    assert "MemoryKeyring" in generated.stored_in
    assert skey not in repr(generated)


def test_generate_never_replaces_a_key_in_the_keyring(memory_keyring: MemoryKeyring) -> None:
    generate_key("manager-2026")
    first = dict(memory_keyring.secrets)
    with pytest.raises(Refused, match="already holds a signing key named 'manager-2026'"):
        generate_key("manager-2026")
    assert memory_keyring.secrets == first


def test_without_an_os_keyring_generate_says_so_and_writes_nothing(
    no_keyring: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(EnvironmentFault) as caught:
        generate_key("manager-2026")
    assert str(caught.value) == (
        "No OS keyring is available on this machine; pass --key-file PATH to keep the key in a "
        "file only you can read (see docs/checkpoints.md)."
    )
    assert caught.value.exit_code == 4
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "backend",
    [null.Keyring(), PlaintextKeyring(), ForgetfulKeyring()],
    ids=lambda backend: type(backend).__name__,
)
def test_a_keyring_that_would_lose_or_expose_the_key_is_refused(backend: KeyringBackend) -> None:
    with _use_keyring(backend), pytest.raises(EnvironmentFault, match="--key-file PATH"):
        generate_key("manager-2026")
    if isinstance(backend, MemoryKeyring) and not isinstance(backend, ForgetfulKeyring):
        assert backend.secrets == {}


def test_key_file_is_private_to_its_owner_and_never_overwritten(
    memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    path = tmp_path / "manager.key"
    old_umask = os.umask(0)  # even a permissive umask leaves the file private
    try:
        generated = generate_key("manager-2026", key_file=path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generated.stored_in == str(path)
    written = path.read_text(encoding="utf-8")
    assert parse_skey(written).name == "manager-2026"
    assert memory_keyring.secrets == {}  # a key file means the file only

    with pytest.raises(BadInput, match="never overwrites a key file"):
        generate_key("manager-2026", key_file=path)
    assert path.read_text(encoding="utf-8") == written


def test_key_file_alternative_works_without_any_keyring(no_keyring: None, tmp_path: Path) -> None:
    generated = generate_key("offline-1", key_file=tmp_path / "offline.key")
    assert parse_vkey(generated.vkey).name == "offline-1"


def test_key_file_in_a_missing_folder_is_bad_input(no_keyring: None, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="Cannot create the key file"):
        generate_key("offline-1", key_file=tmp_path / "nowhere" / "offline.key")


def test_bad_key_names_are_refused_before_anything_is_made(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(BadInput, match="cannot name a signing key"):
        generate_key("ann smith")
    assert memory_keyring.secrets == {}


# -- registering ----------------------------------------------------------------------------------


def test_register_and_list_keys(
    memory_keyring: MemoryKeyring, manager: Workspace, database: Database
) -> None:
    vkey = generate_key("manager-2026").vkey
    info = register_key(manager, f"  {vkey}\n")
    assert (info.name, info.vkey, info.owner, info.registered_by) == (
        "manager-2026",
        vkey,
        "manager",
        "manager",
    )
    assert info.key_id == vkey.split("+")[1]
    listed = list_keys(database.workspace("auditor"))
    assert [k.vkey for k in listed] == [vkey]


def test_registering_is_audited(memory_keyring: MemoryKeyring, manager: Workspace) -> None:
    _ready_signer(manager)
    actions = manager.read(lambda unit: list(unit.session.scalars(select(AuditEntry.action)).all()))
    assert "audit.key.register" in actions


def test_register_refusals(
    memory_keyring: MemoryKeyring, manager: Workspace, database: Database
) -> None:
    vkey = _ready_signer(manager)
    with pytest.raises(Refused, match="a key named 'manager-2026'"):
        register_key(manager, vkey)
    same_key_new_name = format_vkey("manager-2027", parse_vkey(vkey).public_key)
    with pytest.raises(Refused, match="this public key"):
        register_key(manager, same_key_new_name)
    with pytest.raises(BadInput, match="not a verifier key"):
        register_key(manager, "manager-2026")
    with pytest.raises(BadInput, match="private key, not a verifier key"):
        register_key(manager, memory_keyring.secrets[(KEYRING_SERVICE, "manager-2026")])
    with pytest.raises(Refused, match="'nobody' is not an active user"):
        register_key(manager, _other_vkey(), owner="nobody")
    with pytest.raises(PermissionDenied, match="clerk"):
        register_key(database.workspace("clerk"), _other_vkey())
    assert [k.name for k in list_keys(manager)] == ["manager-2026"]


# -- signing and checking -------------------------------------------------------------------------


def test_sign_and_check_round_trip(memory_keyring: MemoryKeyring, manager: Workspace) -> None:
    vkey = _ready_signer(manager)
    database_id = _database_id(manager)

    signed = sign_checkpoint(manager, "manager-2026")

    assert signed.origin == f"billing-desk/{database_id}"
    assert signed.sequence >= 1
    note = parse_note(signed.note_text)
    assert (note.size, note.hash_hex) == (signed.sequence, signed.head_hash)
    checked = check_note(signed.note_text, [TrustedKey.from_vkey(vkey)], database_id=database_id)
    assert checked.problems == []
    assert checked.key_names_verified == ["manager-2026"]
    assert checked.trusted
    assert (checked.sequence, checked.head_hash) == (signed.sequence, signed.head_hash)
    # Registered in the database, yet trusted only when the verifier brings the key itself.
    assert not check_note(signed.note_text, [], database_id=database_id).trusted

    # The note pins the chain as it was; storing the checkpoint is itself a later entry.
    sequence, _ = _head(manager)
    assert sequence > signed.sequence
    rows = manager.read(
        lambda unit: [
            (c.sequence, c.head_hash, c.key_name, c.signed_by, c.note)
            for c in unit.session.scalars(select(Checkpoint))
        ]
    )
    assert rows == [
        (signed.sequence, signed.head_hash, "manager-2026", "manager", signed.note_text)
    ]
    actions = manager.read(lambda unit: list(unit.session.scalars(select(AuditEntry.action))))
    assert "audit.checkpoint" in actions


def test_the_signed_head_is_the_sealed_head(
    memory_keyring: MemoryKeyring, manager: Workspace
) -> None:
    _ready_signer(manager)
    signed = sign_checkpoint(manager, "manager-2026")
    hash_at = manager.read(
        lambda unit: unit.session.execute(
            select(AuditChainHead.last_sequence, AuditChainHead.last_hash)
        ).one()
    )
    assert hash_at.last_sequence == signed.sequence + 1  # only the checkpoint's own entry since
    later = sign_checkpoint(manager, "manager-2026")
    assert (later.sequence, later.head_hash) == (hash_at.last_sequence, hash_at.last_hash)


def test_sign_with_the_actors_only_key_by_default(
    memory_keyring: MemoryKeyring, manager: Workspace
) -> None:
    _ready_signer(manager)
    assert sign_checkpoint(manager).key_name == "manager-2026"
    _ready_signer(manager, "manager-2027")
    with pytest.raises(BadInput, match="several signing keys"):
        sign_checkpoint(manager)


def test_sign_with_a_key_file(no_keyring: None, manager: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "manager.key"
    vkey = generate_key("manager-file", key_file=path).vkey
    register_key(manager, vkey)
    signed = sign_checkpoint(manager, None, key_file=path)
    checked = check_note(
        signed.note_text, [TrustedKey.from_vkey(vkey)], database_id=_database_id(manager)
    )
    assert checked.trusted
    with pytest.raises(BadInput, match="named 'manager-file', not 'other'"):
        sign_checkpoint(manager, "other", key_file=path)
    path.chmod(0o644)
    with pytest.raises(BadInput, match="can be read by others"):
        sign_checkpoint(manager, None, key_file=path)


def test_signing_without_a_keyring_points_to_the_key_file(
    no_keyring: None, manager: Workspace
) -> None:
    with pytest.raises(EnvironmentFault, match="No OS keyring"):
        sign_checkpoint(manager, "manager-2026")


def test_a_signer_must_be_registered(memory_keyring: MemoryKeyring, manager: Workspace) -> None:
    generate_key("manager-2026")
    with pytest.raises(Refused, match="not registered in this database; a signer must be"):
        sign_checkpoint(manager, "manager-2026")
    assert manager.read(lambda unit: unit.session.scalars(select(Checkpoint)).first()) is None


def test_a_private_key_must_match_the_registered_key(
    memory_keyring: MemoryKeyring, manager: Workspace
) -> None:
    generate_key("manager-2026")
    register_key(manager, _other_vkey("manager-2026"))  # same name, someone else's key
    with pytest.raises(Refused, match="does not match the public key registered"):
        sign_checkpoint(manager, "manager-2026")


def test_only_the_owner_signs_with_a_key(
    memory_keyring: MemoryKeyring, manager: Workspace, database: Database
) -> None:
    add_user(database.workspace("admin"), "manager2", "manager")
    register_key(manager, generate_key("manager2-key").vkey, owner="manager2")
    with pytest.raises(Refused, match="belongs to manager2"):
        sign_checkpoint(manager, "manager2-key")
    assert (
        sign_checkpoint(database.workspace("manager2"), "manager2-key").key_name == "manager2-key"
    )


def test_a_clerk_may_not_sign(
    memory_keyring: MemoryKeyring, manager: Workspace, database: Database
) -> None:
    _ready_signer(manager)
    with pytest.raises(PermissionDenied, match="clerk"):
        sign_checkpoint(database.workspace("clerk"), "manager-2026")


def test_missing_private_key_is_bad_input(
    memory_keyring: MemoryKeyring, manager: Workspace
) -> None:
    with pytest.raises(BadInput, match="no signing key named 'ghost' in your OS keyring"):
        sign_checkpoint(manager, "ghost")


# -- what the verifier reports --------------------------------------------------------------------


@pytest.fixture
def signed(
    memory_keyring: MemoryKeyring, fresh_database: Callable[[str], Database]
) -> tuple[str, str, str]:
    """(note, its signer's verifier key, the database id). Checking a note touches no database,
    so one backend makes the note for these tests."""
    database = fresh_database("sqlite")
    seed_users(database.workspace("admin"))
    manager = database.workspace("manager")
    vkey = _ready_signer(manager)
    return sign_checkpoint(manager, "manager-2026").note_text, vkey, _database_id(manager)


def test_a_note_by_an_untrusted_key_is_reported(signed: tuple[str, str, str]) -> None:
    note, _vkey, database_id = signed
    for trusted in ([], [TrustedKey.from_vkey(_other_vkey())]):
        checked = check_note(note, trusted, database_id=database_id)
        assert checked.key_names_verified == []
        assert not checked.trusted
        [problem] = checked.problems
        assert "signed by manager-2026, a key this verifier does not trust" in problem


def test_a_trusted_name_with_another_key_is_not_trusted(signed: tuple[str, str, str]) -> None:
    note, _vkey, database_id = signed
    impostor = TrustedKey.from_vkey(_other_vkey("manager-2026"))
    checked = check_note(note, [impostor], database_id=database_id)
    assert "does not trust" in checked.problems[0]


def _replace_line(note: str, index: int, value: str) -> str:
    lines = note.split("\n")
    lines[index] = value
    return "\n".join(lines)


@pytest.mark.parametrize("what", ["size", "hash"])
def test_a_tampered_note_fails_its_signature(signed: tuple[str, str, str], what: str) -> None:
    note, vkey, database_id = signed
    size = parse_note(note).size
    tampered = (
        _replace_line(note, 1, str(size + 1))
        if what == "size"
        else _replace_line(note, 2, base64.b64encode(bytes(32)).decode())
    )
    checked = check_note(tampered, [TrustedKey.from_vkey(vkey)], database_id=database_id)
    assert checked.key_names_verified == []
    assert checked.problems == [
        "The signature by manager-2026 fails: the note was changed after it was signed, or the "
        "signature is damaged."
    ]


def test_a_damaged_signature_fails(signed: tuple[str, str, str]) -> None:
    note, vkey, database_id = signed
    body, _, line = note.rpartition("\n\n")
    prefix, encoded = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 0x01
    damaged = f"{body}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    checked = check_note(damaged, [TrustedKey.from_vkey(vkey)], database_id=database_id)
    assert "fails" in checked.problems[0]


def test_a_note_for_another_database_is_reported(signed: tuple[str, str, str]) -> None:
    note, vkey, database_id = signed
    other = str(uuid.uuid4())
    checked = check_note(note, [TrustedKey.from_vkey(vkey)], database_id=other)
    assert checked.key_names_verified == ["manager-2026"]  # a good signature, the wrong place
    assert checked.problems == [f"The note is for database {database_id}, not this one ({other})."]
    assert not checked.trusted
    # Without a database to compare with, the note's origin is taken as it is.
    assert check_note(note, [TrustedKey.from_vkey(vkey)], database_id=None).trusted


def test_extra_signatures_by_unknown_keys_are_ignored(signed: tuple[str, str, str]) -> None:
    note, vkey, database_id = signed
    extra = f"— witness {base64.b64encode(bytes(68)).decode()}\n"
    checked = check_note(note + extra, [TrustedKey.from_vkey(vkey)], database_id=database_id)
    assert checked.trusted


def test_malformed_notes_are_bad_input(signed: tuple[str, str, str]) -> None:
    note, vkey, database_id = signed
    trusted = [TrustedKey.from_vkey(vkey)]
    body, _, line = note.rpartition("\n\n")
    name = "manager-2026"
    broken = [
        body + "\n" + line,  # no blank line before the signatures
        f"{body}\n\n— {name} ***not-base64***\n",
        f"{body}\n\n— {name} {base64.b64encode(b'abc').decode()}\n",  # shorter than a key id
        body + "\n" + "x" * (64 * 1024) + "\n\n" + line,
    ]
    for text in broken:
        with pytest.raises(BadInput):
            check_note(text, trusted, database_id=database_id)


# -- the verifier's trusted keys ------------------------------------------------------------------


def test_trusted_keys_from_files_and_the_verifiers_own_config(
    tmp_path: Path, config_home: Path
) -> None:
    first, second, third = _other_vkey("ann"), _other_vkey("bob"), _other_vkey("cy")
    given = tmp_path / "keys.txt"
    given.write_text(f"# managers' keys\n\n{first}\n  {second}  \n{first}\n", encoding="utf-8")
    assert [k.vkey for k in load_trusted_keys([given])] == [first, second]

    own = trusted_keys_path()
    assert own == config_home / "billing-desk" / "trusted-keys"
    own.parent.mkdir(parents=True)
    own.write_text(third + "\n", encoding="utf-8")
    loaded = load_trusted_keys([given])
    assert [k.name for k in loaded] == ["ann", "bob", "cy"]
    assert loaded[2].source == f"{own}:1"
    assert [k.name for k in load_trusted_keys([])] == ["cy"]


def test_a_missing_trust_key_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_trusted_keys([tmp_path / "missing.txt"])


def test_a_bad_line_in_a_trusted_key_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"{_other_vkey()}\nnot a key\n", encoding="utf-8")
    with pytest.raises(BadInput, match="line 2"):
        load_trusted_keys([path])
