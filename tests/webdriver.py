"""A very small W3C WebDriver client over HTTP for headless Chromium (chromedriver): enough to
open a page and run a script in it, which is all the browser tests need."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import free_port


class Browser:
    def __init__(self, base: str, session_id: str) -> None:
        self._session = f"{base}/session/{session_id}"

    def _call(self, method: str, path: str, body: dict | None = None):
        response = httpx.request(method, self._session + path, json=body, timeout=60)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"webdriver {path}: {value.get('error')}: {value.get('message')}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        """Runs `script` (a function body) in the page and returns what it returns."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout: float = 60.0, *args):
        """Runs `script` until it returns something truthy; fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.run(script, *args)
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"the page never satisfied: {script}")


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    driver, chromium = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver or not chromium:
        pytest.fail("chromium and chromedriver are missing: `bash infra/chromium.sh` installs them")
    port = free_port()
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/status", timeout=1).json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chromedriver did not start")
            time.sleep(0.1)
        options = {"binary": chromium, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            # The test page and the API are different origins, and the API sends no CORS headers.
            "--disable-web-security",
        ]}
        created = httpx.post(f"{base}/session", timeout=60, json={
            "capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}})
        assert created.status_code == 200, created.text
        session_id = created.json()["value"]["sessionId"]
        try:
            yield Browser(base, session_id)
        finally:
            httpx.delete(f"{base}/session/{session_id}", timeout=30)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
