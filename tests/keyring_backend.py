"""A keyring backend that keeps secrets in memory, for tests that choose their backend explicitly.

Its priority is below keyring's own fail backend, so keyring never picks it by itself: a test sets
it with `keyring.set_keyring(MemoryKeyring())` and puts the previous backend back afterwards.
"""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    priority = -10  # below the fail backend: never chosen by keyring's own detection

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise PasswordDeleteError(f"no secret for {username} in {service}")


class PlaintextKeyring(MemoryKeyring):
    """Stands in for keyrings.alt's PlaintextKeyring, which writes secrets to a plain file."""


class ForgetfulKeyring(MemoryKeyring):
    """Accepts secrets and keeps none, like a misconfigured backend."""

    def set_password(self, service: str, username: str, password: str) -> None:
        return None
