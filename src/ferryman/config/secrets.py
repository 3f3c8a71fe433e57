"""Secrets the operator did not set are generated once into the data directory.

They live in `<data_dir>/secrets.json` (mode 0600, the directory 0700). A value set in the
environment always wins and is never written to disk. Several workers starting at once
agree on one file through an exclusive lock.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from pydantic import SecretStr

from ferryman.config.settings import Settings, master_keys_problem, secret_too_short
from ferryman.errors import SecretsError

log = structlog.get_logger("ferryman.secrets")

SECRETS_FILE = "secrets.json"


def _new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def _new_encryption_keys() -> str:
    return "k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode()


GENERATORS: dict[str, Callable[[], str]] = {
    "secret_key": _new_secret_key,
    "encryption_keys": _new_encryption_keys,
    "key_pepper": _new_secret_key,
}


@dataclass(frozen=True)
class Secrets:
    """The secrets this process runs with, wherever they came from."""

    secret_key: SecretStr
    encryption_keys: SecretStr
    key_pepper: SecretStr
    generated: tuple[str, ...] = field(default=(), compare=False)
    """Which of them this call generated (the first start tells the operator once)."""


def ensure_data_dir(data_dir: Path) -> Path:
    """Create the data directory (mode 0700) if needed and return its absolute path."""
    path = data_dir.resolve()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SecretsError(f"cannot create data directory {path}: {exc}") from None
    return path


def _read(path: Path) -> dict[str, str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SecretsError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SecretsError(f"{path} is not valid JSON ({exc}); restore it or remove it") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SecretsError(f"{path} must be a JSON object of strings")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("secrets_file_permissions", path=str(path), mode=oct(mode), expected="0o600")
    return data


def read_stored(settings: Settings) -> tuple[Path, dict[str, str]]:
    """The secrets file of the data directory and what it holds, without creating or
    changing anything (`ferryman doctor`); SecretsError when it cannot be read."""
    path = settings.data_dir.resolve() / SECRETS_FILE
    return path, _read(path)


def _write(path: Path, data: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[Path]:
    """The secrets file's path, held under the data directory's exclusive lock."""
    lock_path = data_dir / ".secrets.lock"
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SecretsError(f"cannot lock {lock_path}: {exc}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        yield data_dir / SECRETS_FILE
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)


def add_master_key(settings: Settings, key_id: str, key: str) -> str:
    """Put a new master key first in the data directory's list; the new list.

    Only for generated keys: when FERRYMAN_ENCRYPTION_KEYS is set, the operator owns
    the list and adds the key there."""
    if settings.encryption_keys is not None:
        raise SecretsError(
            "FERRYMAN_ENCRYPTION_KEYS is set: add the new key at its front yourself "
            f"({key_id}:<32 random bytes, URL-safe base64>), restart, then rotate"
        )
    data_dir = ensure_data_dir(settings.data_dir)
    with _locked(data_dir) as path:
        stored = _read(path)
        current = stored.get("encryption_keys")
        if not current:
            raise SecretsError(f"{path} holds no encryption keys yet; start Ferryman once first")
        stored["encryption_keys"] = f"{key_id}:{key},{current}"
        try:
            _write(path, stored)
        except OSError as exc:
            raise SecretsError(f"cannot write {path}: {exc}") from None
    log.warning("master_key_added", key_id=key_id, path=str(path))
    return stored["encryption_keys"]


def ensure_secrets(settings: Settings) -> Secrets:
    """Return the secrets, generating (once) those the environment does not provide."""
    from_env = {
        "secret_key": settings.secret_key,
        "encryption_keys": settings.encryption_keys,
        "key_pepper": settings.key_pepper,
    }
    missing = [name for name, value in from_env.items() if value is None]
    stored: dict[str, str] = {}
    generated: list[str] = []
    if missing:
        data_dir = ensure_data_dir(settings.data_dir)
        with _locked(data_dir) as path:
            stored = _read(path)
            generated = [name for name in missing if not stored.get(name)]
            if generated:
                for name in generated:
                    stored[name] = GENERATORS[name]()
                try:
                    _write(path, stored)
                except OSError as exc:
                    raise SecretsError(f"cannot write {path}: {exc}") from None
                for name in generated:
                    log.warning(
                        "secret_generated",
                        name=name,
                        path=str(path),
                        hint=f"set FERRYMAN_{name.upper()} to manage it yourself",
                    )

    def pick(name: str) -> SecretStr:
        value = from_env[name]
        if value is not None:
            return value  # checked when the settings were read
        check = master_keys_problem if name == "encryption_keys" else secret_too_short
        problem = check(stored[name])
        if problem:
            where = settings.data_dir.resolve() / SECRETS_FILE
            raise SecretsError(f"{where}: {name}: {problem}")
        return SecretStr(stored[name])

    return Secrets(
        secret_key=pick("secret_key"),
        encryption_keys=pick("encryption_keys"),
        key_pepper=pick("key_pepper"),
        generated=tuple(generated),
    )
