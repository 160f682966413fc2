"""Subscriber secrets encrypted at rest, and the key file that holds the key."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from dispatch.errors import StoreUnavailable, ValidationFailed
from dispatch.secretbox import SecretBox, load_or_create_key

PLAIN = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def test_roundtrip() -> None:
    """A secret encrypted by a box decrypts to the same text, for str and bytes keys alike."""
    key = Fernet.generate_key()
    for box in (SecretBox(key), SecretBox(key.decode())):
        assert box.decrypt(box.encrypt(PLAIN)) == PLAIN
    assert SecretBox(key).decrypt(SecretBox(key.decode()).encrypt("é ✓")) == "é ✓"


def test_ciphertext_does_not_contain_plaintext() -> None:
    """The stored token reveals neither the secret nor its base64 part, and differs per encryption."""
    box = SecretBox(Fernet.generate_key())
    token = box.encrypt(PLAIN)
    assert PLAIN not in token
    assert PLAIN.removeprefix("whsec_") not in token
    assert box.encrypt(PLAIN) != token


def test_wrong_key_fails_clearly() -> None:
    """Decrypting with another key raises ValidationFailed that points at a changed key."""
    token = SecretBox(Fernet.generate_key()).encrypt(PLAIN)
    with pytest.raises(ValidationFailed, match="different key"):
        SecretBox(Fernet.generate_key()).decrypt(token)


@pytest.mark.parametrize("token", ["", "not-a-token", "gAAAAAB" + "A" * 80, "é"])
def test_corrupted_token_fails_clearly(token: str) -> None:
    """A token that is not Fernet output raises ValidationFailed, never a library exception."""
    with pytest.raises(ValidationFailed, match="cannot decrypt"):
        SecretBox(Fernet.generate_key()).decrypt(token)


@pytest.mark.parametrize("bad", ["", "short", "x" * 44, "é" * 44])
def test_bad_key_refused(bad: str) -> None:
    """A string that is not a Fernet key is refused by SecretBox and load_or_create_key."""
    with pytest.raises(ValidationFailed, match="Fernet key"):
        SecretBox(bad)
    with pytest.raises(ValidationFailed, match="RELAY_SECRET_KEY"):
        load_or_create_key(bad, Path("unused.key"))


def test_repr_hides_key() -> None:
    """Neither repr nor str of a box shows the key."""
    key = Fernet.generate_key().decode()
    box = SecretBox(key)
    assert key not in repr(box)
    assert key not in str(box)
    assert key[:10] not in repr(box)


def test_given_key_wins_and_file_untouched(tmp_path: Path) -> None:
    """A configured key is returned as is and no key file is written."""
    key = Fernet.generate_key().decode()
    key_file = tmp_path / "relay.key"
    assert load_or_create_key(key, key_file) == key
    assert not key_file.exists()


@posix_only
def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    """Without a configured key, one is generated into a 0600 file and the same key is read back later."""
    key_file = tmp_path / "relay.key"
    first = load_or_create_key(None, key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first
    assert load_or_create_key(None, key_file) == first
    box = SecretBox(first)
    assert SecretBox(load_or_create_key(None, key_file)).decrypt(box.encrypt(PLAIN)) == PLAIN


@posix_only
def test_key_file_is_0600_despite_permissive_umask(tmp_path: Path) -> None:
    """The key file is created 0600 even when the process umask would allow group/other access."""
    previous = os.umask(0)
    try:
        load_or_create_key(None, tmp_path / "relay.key")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "relay.key").stat().st_mode) == 0o600


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    """A key file with group/other permission bits is refused with a chmod hint."""
    key_file = tmp_path / "relay.key"
    key_file.write_text(Fernet.generate_key().decode())
    key_file.chmod(mode)
    with pytest.raises(ValidationFailed, match="chmod 600"):
        load_or_create_key(None, key_file)


@posix_only
def test_key_file_with_garbage_refused(tmp_path: Path) -> None:
    """A key file that does not hold a Fernet key is refused and names the file."""
    key_file = tmp_path / "relay.key"
    key_file.write_text("not a key\n")
    key_file.chmod(0o600)
    with pytest.raises(ValidationFailed, match=r"relay\.key"):
        load_or_create_key(None, key_file)


def test_key_file_folder_is_created(tmp_path: Path) -> None:
    """A key file in a folder that does not exist yet is created with its folder, and nothing else
    (no temporary file) is left behind."""
    key_file = tmp_path / "data" / "nested" / "relay.key"
    key = load_or_create_key(None, key_file)
    assert key_file.read_text().strip() == key
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["relay.key"]


def test_key_file_that_cannot_be_created_is_store_unavailable(tmp_path: Path) -> None:
    """When the key file's folder cannot exist (its parent is a regular file), the error names the
    key file instead of escaping as a traceback."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match=r"not-a-folder/relay\.key"):
        load_or_create_key(None, blocker / "relay.key")


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    """Sixteen threads creating the key file at the same moment (serve and worker starting at once)
    all get the same key, and the file holds it complete."""
    key_file = tmp_path / "relay.key"
    barrier = threading.Barrier(16)

    def create() -> str:
        barrier.wait()
        return load_or_create_key(None, key_file)

    with ThreadPoolExecutor(16) as pool:
        keys = set(pool.map(lambda _: create(), range(16)))
    assert keys == {key_file.read_text().strip()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relay.key"]
