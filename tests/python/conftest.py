"""Fixtures shared by the Python end-to-end suites: the local model server and the browser."""

import os
import shutil
import socket
import subprocess

import pytest

from chat_page import ROOT, Server, chromium, quit_checked


def tree_status():
    """`git status` of the repository (tracked changes and untracked files), or None outside git."""
    if not shutil.which("git"):
        return None
    out = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
    )
    return out.stdout if out.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def tree_stays_clean():
    """Tests write only under temporary or ignored folders: the session fails if it changed
    `git status` (a tracked file rewritten, like the README's screenshot, or a file left behind)."""
    before = tree_status()
    yield
    after = tree_status()
    assert before == after, f"the tests changed the tree:\nbefore:\n{before}\nafter:\n{after}"


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
def server(tmp_path):
    """A `wsexec-local serve --dev-auth` process, stopped after the test."""
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def logged_server(tmp_path):
    """`server` at log level INFO: its invocation lines name each `$connect`'s user and
    connection id (`Server.connection_ids`)."""
    s = Server(tmp_path, rust_log="info")
    yield s
    s.stop()


@pytest.fixture
def browser(tmp_path):
    """Headless Debian Chromium driven by Selenium, quit after the test, which then fails on
    any console error the test did not declare (`chat_page.expect_console_errors`)."""
    driver = chromium(tmp_path)
    yield driver
    quit_checked(driver)
