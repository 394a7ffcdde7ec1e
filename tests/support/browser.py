"""Headless Chromium (Debian package `chromium`) driven by Playwright, for the browser tests:
outside CI a missing tool skips the test with a message naming it; in CI it fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser(test_name: str, extra: dict[str, Path] | None = None) -> None:
    """Skip (fail in CI) when Chromium, Playwright or one of `extra` (description → path
    that must exist) is missing."""
    missing = []
    if not CHROMIUM.exists():
        missing.append("Debian package `chromium` (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Python package `playwright` (pip install -e '.[test]')")
    missing += [what for what, path in (extra or {}).items() if not path.exists()]
    if not missing:
        return
    message = f"{test_name} needs the " + " and the ".join(missing)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def launched_chromium(test_name: str, extra: dict[str, Path] | None = None) -> Iterator[Any]:
    """A headless Chromium browser (Playwright's `Browser`) for the length of the block."""
    require_browser(test_name, extra)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
