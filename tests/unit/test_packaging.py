"""What a newcomer sees on the first run: the setup script's interpreter probe is silent, and the package metadata
is in the form the build backend expects (no deprecation warnings)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_interpreter_probe_says_nothing_about_pythons_that_are_missing(tmp_path: Path) -> None:
    # a pyenv-style shim: on PATH, but "command not found" on stderr when run
    for name in ("python3.13", "python3.12"):
        shim = tmp_path / name
        shim.write_text('#!/bin/sh\necho "pyenv: $0: command not found" >&2\nexit 127\n')
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "python3.11").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin", "SETUP_PROBE_ONLY": "1"}
    env.pop("PYTHON", None)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip() == "python3.11"


def test_the_license_is_an_spdx_string_for_a_backend_that_takes_it() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)
    assert "setuptools>=77" in meta["build-system"]["requires"]
