"""Deployment tests: the Helm chart, the gunicorn config and the nginx example.

They need neither Django nor a database (they never request the `db` fixture and run with or without
pytest-django), only the files under deploy/ and helm/ and the tools named in each test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deploy: deployment artefact tests (no Django, no database)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the directory holding deploy/ and helm/)."""
    return REPO_ROOT
