"""Secrets missing on first start are generated once, kept private, and reused."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ferryman.config.secrets import ensure_secrets
from ferryman.config.settings import Settings
from ferryman.errors import SecretsError

FROM_ENV = "secret-key-from-the-environment-0123456789"


def settings_for(data_dir: Path, **values: str) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[call-arg, arg-type]


def test_generated_once_with_private_permissions_and_a_log_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with capture_logs() as logs:
        first = ensure_secrets(settings_for(data))
    path = data / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    generated = sorted(e["name"] for e in logs if e["event"] == "secret_generated")
    assert generated == ["encryption_keys", "key_pepper", "secret_key"]
    text = str(logs)
    assert first.secret_key.get_secret_value() not in text

    key_id, key = first.encryption_keys.get_secret_value().split(":")
    assert key_id == "k1" and len(base64.urlsafe_b64decode(key)) == 32
    assert len(first.secret_key.get_secret_value()) >= 64

    with capture_logs() as logs:
        second = ensure_secrets(settings_for(data))
    assert second == first
    assert not [e for e in logs if e["event"] == "secret_generated"]
    assert (first.generated, second.generated) == (
        ("secret_key", "encryption_keys", "key_pepper"),
        (),
    )


def test_environment_values_win_and_are_never_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    secrets = ensure_secrets(
        settings_for(
            data,
            secret_key=FROM_ENV,
            encryption_keys="k9:" + "B" * 43 + "=",
            key_pepper="pepper-from-env-0123456789-0123456789",
        )
    )
    assert secrets.secret_key.get_secret_value() == FROM_ENV
    assert not (data / "secrets.json").exists()
    partial = ensure_secrets(settings_for(data, secret_key=FROM_ENV))
    stored = json.loads((data / "secrets.json").read_text())
    assert set(stored) == {"encryption_keys", "key_pepper"}
    assert partial.encryption_keys.get_secret_value() == stored["encryption_keys"]


def test_workers_starting_together_agree_on_one_set(tmp_path: Path) -> None:
    data = tmp_path / "data"
    results = []

    def start() -> None:
        results.append(ensure_secrets(settings_for(data)))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.secret_key.get_secret_value() for r in results}) == 1


def test_a_corrupt_secrets_file_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "secrets.json").write_text("{not json")
    with pytest.raises(SecretsError, match=r"secrets\.json is not valid JSON"):
        ensure_secrets(settings_for(data))


def test_an_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(SecretsError, match="cannot create data directory"):
            ensure_secrets(settings_for(blocker / "data"))
        return
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    with pytest.raises(SecretsError):
        ensure_secrets(settings_for(data))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("secret_key", "short-secret", "must be at least 32 bytes long (it has 12)"),
        ("key_pepper", "p" * 31, "must be at least 32 bytes long (it has 31)"),
        ("encryption_keys", "k1:" + "A" * 22, "KEY must be 32 bytes (AES-256), got 16"),
        ("encryption_keys", "k1", "expected ID:KEY"),
    ],
)
def test_a_weak_secret_in_the_data_directory_is_refused_by_name(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    data = tmp_path / "data"
    ensure_secrets(settings_for(data))
    path = data / "secrets.json"
    stored = json.loads(path.read_text())
    stored[name] = value
    path.write_text(json.dumps(stored))
    with pytest.raises(SecretsError) as info:
        ensure_secrets(settings_for(data))
    message = str(info.value)
    assert message.startswith(f"{path}: {name}: ")
    assert expected in message
    assert value not in message
