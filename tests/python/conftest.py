"""Fixtures shared by the Python end-to-end suites: the local model server and the browser."""

import os
import socket
import subprocess

import pytest

from chat_page import ROOT, chromium


@pytest.fixture(scope="session")
def llm_url():
    """The local SmolLM2 server's `/v1` URL, started for this session unless one is given."""
    given = os.environ.get("WSEXEC_LLM_URL")
    if given:
        yield given
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = str(ROOT / "tools" / "llm-server")
    out = subprocess.run([script, "start", str(port)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"tools/llm-server start failed:\n{out.stderr}"
    pid = out.stdout.strip().splitlines()[-1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        subprocess.run([script, "stop", pid], timeout=60)


@pytest.fixture
def browser(tmp_path):
    """Headless Debian Chromium driven by Selenium, quit after the test."""
    driver = chromium(tmp_path)
    yield driver
    driver.quit()
