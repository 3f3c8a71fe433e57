"""`ferryman serve` refuses weak secrets at start, naming the variable, never the value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")}
    return subprocess.run(
        [sys.executable, "-m", "ferryman", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env={**clean, "FERRYMAN_DATA_DIR": str(tmp_path / "data"), **env},
        cwd=tmp_path,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FERRYMAN_SECRET_KEY", "changeme-changeme", "must be at least 32 bytes long (it has 17)"),
        ("FERRYMAN_KEY_PEPPER", "pepper-1234", "must be at least 32 bytes long (it has 11)"),
        (
            "FERRYMAN_ENCRYPTION_KEYS",
            "k1:c2hvcnQta2V5LXNob3J0LWtleQ",
            "entry 1 (k1): KEY must be 32 bytes (AES-256), got 19",
        ),
    ],
)
def test_a_short_secret_stops_serve_with_the_variable_named(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = serve(tmp_path, **{variable: value})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{variable}: {expected}" in result.stderr
    assert "Traceback" not in output
    assert value not in output
    assert not (tmp_path / "data" / "ferryman.db").exists()  # refused before anything ran
