"""Shared fixtures: every test gets its own HOME (the stores' default folder is
~/.PySpeedup) and working directory, so the originals' examples run verbatim without
touching the real home folder."""

import os
import subprocess
import sys
import textwrap

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_python(code, timeout=60, env=None):
    """Runs `code` in a fresh interpreter (with this HOME); returns the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
