"""Support for the chat page tests: a `wsexec-local serve` process, headless Chromium driven by
Selenium (Debian's `chromium` and `chromium-driver`), and waits on the page's stable hooks.

Every wait is bounded; nothing here reaches a host but 127.0.0.1.
"""

import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.parse

# Selenium Manager must never fetch a driver or browser: Debian's packages are the ones used.
os.environ.setdefault("SE_OFFLINE", "true")

from selenium import webdriver  # noqa: E402 (after SE_OFFLINE, which it reads on use)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("WSEXEC_LOCAL_BIN", str(ROOT / "target" / "debug" / "wsexec-local"))
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
# Long enough for a cold page and an echo run on two busy cores; short enough to fail fast.
WAIT = 20
# The real model on two shared cores: a short answer, but a first prompt evaluation too.
LLM_WAIT = 90
LISTENING = re.compile(r"^wsexec-local listening on ws://(127\.0\.0\.1:\d+)$")
# Chromium with nothing of its own on the network: no updates, sync, QUIC or first-run calls.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


class Server:
    """A `wsexec-local serve --port 0 --dev-auth` process (plus `args`); `addr` is the
    `host:port` it printed."""

    def __init__(self, tmp_path, env=None, rust_log="warn", args=()):
        full_env = dict(
            os.environ,
            RUST_LOG=rust_log,
            AWS_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="AKIDLOCAL",
            AWS_SECRET_ACCESS_KEY="local-secret",
            AWS_EC2_METADATA_DISABLED="true",
        )
        full_env.update(env or {})
        self.log_path = tmp_path / "server-stderr.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--port", "0", "--dev-auth", "--data-dir", str(tmp_path / "data"), *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=full_env,
            cwd=tmp_path,
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        try:
            first = lines.get(timeout=WAIT).strip()
        except queue.Empty:
            self.stop()
            raise AssertionError("wsexec-local printed no address line")
        match = LISTENING.match(first)
        assert match, f"unexpected first line: {first!r}"
        self.addr = match.group(1)
        self.page = f"http://{self.addr}/"
        self.url = f"ws://{self.addr}"

    def connection_ids(self, user):
        """The connection ids of `user`'s accepted `$connect`s, from the invocation log lines."""
        self.log.flush()
        ids = []
        # `key="value"` in the text format a terminal gets, `"key":"value"` in JSON.
        field = lambda key, value: rf'\b{key}"?[=:]"?{value}(?=["\s,}}]|$)'
        for line in self.log_path.read_text().splitlines():
            ok = all(
                re.search(field(k, re.escape(v)), line)
                for k, v in (("route", "$connect"), ("user_id", user), ("status", "200"))
            )
            found = re.search(field("connection_id", r'([^",\s]+)'), line)
            if ok and found:
                ids.append(found.group(1))
        return ids

    def interrupt(self):
        """Ctrl-C: a graceful shutdown."""
        self.proc.send_signal(signal.SIGINT)

    def stop(self):
        """Stops the server gracefully (killing it past the wait); returns its exit code."""
        if self.proc.poll() is None:
            self.interrupt()
        try:
            return self.proc.wait(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


def chromium(tmp_path, width=1280, height=900, flags=()):
    """A fresh headless Chromium (own profile) with its performance log on, plus `flags`."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, *flags]:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


def expect_console_errors(driver, *patterns):
    """Declares console errors the test provokes on purpose (regular expressions); any other
    makes `quit_checked` fail."""
    driver.expected_console_errors = [*getattr(driver, "expected_console_errors", []), *patterns]


def console_errors(driver):
    """Chromium's SEVERE console entries since the last call (errors, failed loads, and CSP
    violations, which Chromium reports with source `security`), bar the expected ones."""
    expected = [re.compile(p) for p in getattr(driver, "expected_console_errors", [])]
    return [
        e
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not any(p.search(e["message"]) for p in expected)
    ]


def quit_checked(driver):
    """Quits `driver`, then fails if the page logged any console error it did not expect."""
    try:
        errors = console_errors(driver)
    finally:
        driver.quit()
    assert not errors, "console errors:\n" + "\n".join(e["message"] for e in errors)


def wait_for(driver, what, timeout=WAIT, message=""):
    """Polls `what(driver)` until truthy, for at most `timeout` seconds."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(what, message)


def open_page(driver, server):
    driver.get(server.page)
    wait_for(driver, lambda d: d.find_element(By.ID, "connect").is_enabled())


def connect(driver, user):
    """Types `user` into `#user`, presses Enter (the keyboard path), waits for `connected`."""
    field = driver.find_element(By.ID, "user")
    field.clear()
    field.send_keys(user + "\n")
    wait_for(driver, lambda d: conn_state(d) == "connected", message="never connected")


def conn_state(driver):
    return driver.find_element(By.ID, "conn-state").get_attribute("data-conn")


def send(driver, text):
    """Types `text` into `#message` and presses Enter; returns the new run's element."""
    before = len(runs(driver))
    box = driver.find_element(By.ID, "message")
    box.send_keys(text)
    box.send_keys("\n")
    wait_for(driver, lambda d: len(runs(d)) > before, message="no run rendered")
    return runs(driver)[-1]


def runs(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#transcript article.run")


def wait_state(driver, run, states, timeout=WAIT):
    """Waits until `run`'s `data-state` is one of `states`; returns it."""
    states = {states} if isinstance(states, str) else set(states)
    wait_for(
        driver,
        lambda d: run.get_attribute("data-state") in states,
        timeout,
        f"run never reached {states}",
    )
    return run.get_attribute("data-state")


def set_options(driver, agent=None, delay_ms=None):
    """Opens "Run options" and sets the agent and echo step delay."""
    details = driver.find_element(By.CSS_SELECTOR, "details.options")
    if details.get_attribute("open") is None:
        details.find_element(By.TAG_NAME, "summary").click()
    for field, value in (("agent", agent), ("delay", delay_ms)):
        if value is not None:
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(str(value))


def network_events(driver):
    """Chromium's performance log, as (method, params) pairs, since the last call."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        out.append((message["method"], message.get("params", {})))
    return out


def request_urls(events):
    """Every URL the page requested or opened a WebSocket to."""
    urls = []
    for method, params in events:
        if method == "Network.requestWillBeSent":
            urls.append(params["request"]["url"])
        elif method == "Network.webSocketCreated":
            urls.append(params["url"])
    return urls


def sent_frames(events):
    """The JSON frames the page sent on its WebSockets."""
    frames = []
    for method, params in events:
        if method == "Network.webSocketFrameSent":
            try:
                frames.append(json.loads(params["response"]["payloadData"]))
            except (KeyError, ValueError):
                pass
    return frames


# Schemes Chromium serves from memory (its own new-tab page, the page's data: icon): no host.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-untrusted", "devtools"}


def foreign(urls, addr):
    """The URLs that reach a host other than this gateway."""
    parts = [urllib.parse.urlsplit(u) for u in urls]
    return [p.geturl() for p in parts if p.scheme not in LOCAL_SCHEMES and p.netloc != addr]


def watch_violations(driver):
    """Records every CSP violation the page reports from now on in `window.__violations`."""
    driver.execute_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.__violations.push("
        "{directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample}));"
    )


def violations(driver):
    return driver.execute_script("return window.__violations || [];")


def settle(seconds):
    """A short pause for something that must NOT happen to get its chance to happen."""
    time.sleep(seconds)


def screenshot_mid_run(driver, server, path):
    """The README's screenshot, saved to `path`: a completed echo answer above a running one
    with its tool step showing; the running one is cancelled afterwards."""
    driver.set_window_size(1100, 760)
    open_page(driver, server)
    connect(driver, "grace-01")
    first = send(driver, "What can you do?")
    wait_state(driver, first, "completed")
    set_options(driver, agent="echo", delay_ms=4000)
    run = send(driver, "Plan a trip to Lisbon")
    wait_for(driver, lambda d: run.find_elements(By.CSS_SELECTOR, "details.step"), message="no step")
    assert run.get_attribute("data-state") == "running"
    assert driver.save_screenshot(str(path)), f"cannot write {path}"
    driver.find_element(By.ID, "cancel").click()
    wait_state(driver, run, "cancelled")
