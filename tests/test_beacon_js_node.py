"""beacon.js outside the browser: its Node unit tests (``node --test tests/js/``) and its gzipped size."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest

from tests.support import ROOT

BEACON_JS = ROOT / "service" / "client" / "beacon.js"
MAX_GZIPPED = 6 * 1024  # the contract's "Browsers" section: at most 6 KB gzipped


def test_beacon_js_is_at_most_6_kb_gzipped() -> None:
    size = len(gzip.compress(BEACON_JS.read_bytes(), compresslevel=9))
    assert size <= MAX_GZIPPED, f"beacon.js is {size} bytes gzipped, over {MAX_GZIPPED}"


@pytest.mark.skipif(not shutil.which("node"), reason="Node.js is not installed")
def test_node_unit_tests_of_beacon_js_pass() -> None:
    """The pure parts and the tab-sharing logic, run by Node's own test runner; its summary is printed."""
    result = subprocess.run(
        ["node", "--test", "--test-reporter=spec", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
