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
def test_node_unit_tests_of_beacon_js_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """The pure parts and the tab-sharing logic, run by Node's own test runner; its summary goes to the
    terminal even when pytest captures output."""
    result = subprocess.run(
        ["node", "--test", "--test-reporter=spec", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    info = "\N{INFORMATION SOURCE} "  # the spec reporter's summary lines
    summary = [line.removeprefix(info) for line in result.stdout.splitlines() if line.startswith(info)]
    with capsys.disabled():
        print(f"\n[node --test tests/js/] {', '.join(summary)}")
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
