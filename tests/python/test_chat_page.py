"""The chat page `wsexec-local serve` answers `GET /` with, driven in real headless Chromium.

Needs the built binary (`$WSEXEC_LOCAL_BIN`), Debian's `chromium` and `chromium-driver`, and for
the LLM test the local model server (`tools/llm-server`, or a running one at `$WSEXEC_LLM_URL`).
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import time
import urllib.request
import zlib

from selenium.webdriver.common.by import By

from chat_page import (
    LLM_WAIT,
    Server,
    chromium,
    conn_state,
    connect,
    expect_console_errors,
    foreign,
    network_events,
    open_page,
    quit_checked,
    request_urls,
    runs,
    screenshot_mid_run,
    send,
    set_options,
    settle,
    violations,
    wait_for,
    wait_state,
    watch_violations,
)

XSS = (
    '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
    '<a href="javascript:window.__xss=3">click</a>'
)


def test_echo_answer_completes_and_the_thread_survives_a_reload(server, browser):
    """Connect as a dev user, send with Enter: the echo answer and its tool step render and the
    run ends `completed`; after a reload the thread is in #threads and reopens with that run."""
    open_page(browser, server)
    connect(browser, "alice-01")
    run = send(browser, "Summarise the week")
    assert wait_state(browser, run, {"completed", "failed", "dead", "timeout"}) == "completed"
    transcript = browser.find_element(By.ID, "transcript").text
    assert "echo: Summarise the week" in transcript
    run_id, thread_id = run.get_attribute("data-run-id"), run.get_attribute("data-thread-id")
    assert run_id and thread_id
    step = run.find_element(By.CSS_SELECTOR, "details.step")
    step.find_element(By.TAG_NAME, "summary").click()
    assert "ms" in step.find_element(By.CLASS_NAME, "time").text
    assert step.find_element(By.CLASS_NAME, "result").is_displayed()

    browser.refresh()
    open_page(browser, server)
    assert browser.find_element(By.ID, "user").get_attribute("value") == "alice-01"
    browser.find_element(By.ID, "connect").click()
    row = f'#threads li[data-thread-id="{thread_id}"] button'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), message="thread not listed")
    assert "Summarise the week" in browser.find_element(By.CSS_SELECTOR, row).text
    browser.find_element(By.CSS_SELECTOR, row).click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-run-id="{run_id}"]'))
    again = browser.find_element(By.CSS_SELECTOR, f'[data-run-id="{run_id}"]')
    assert again.get_attribute("data-state") == "completed"
    assert "echo: Summarise the week" in again.text


def hs256(secret, claims):
    """A compact HS256 JWT of `claims`."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def test_a_pasted_jwt_connects_through_the_subprotocol(tmp_path, browser):
    """A JWT pasted into the page is offered as the `jwt.<token>` subprotocol (no `user_id` in
    the URL), the gateway accepts it, and a run completes for that identity."""
    secret = "page-test-secret"
    server = Server(tmp_path, env={"JWT_SECRET": secret})
    try:
        token = hs256(secret, {"sub": "ivan-01", "exp": int(time.time()) + 600})
        open_page(browser, server)
        network_events(browser)
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "connect").click()
        wait_for(browser, lambda d: conn_state(d) == "connected", message="JWT refused")
        run = send(browser, "signed in")
        assert wait_state(browser, run, {"completed", "failed"}) == "completed"
        events = network_events(browser)
        hands = [p for m, p in events if m == "Network.webSocketWillSendHandshakeRequest"]
        assert hands, "no WebSocket handshake logged"
        headers = {k.lower(): v for k, v in hands[0]["request"]["headers"].items()}
        assert headers.get("sec-websocket-protocol") == f"jwt.{token}"
        assert all("user_id" not in u for u in request_urls(events) if u.startswith("ws:"))
    finally:
        server.stop()


def test_llm_answer_grows_before_it_completes(tmp_path, browser, llm_url):
    """With the llm agent on the real local model, the answer's text is seen growing while
    the run is still running, and the completed text is what grew."""
    env = {
        "LLM_PROVIDER": "openai",
        "LLM_MODEL": "smollm2",
        "LLM_BASE_URL": llm_url,
        "LLM_TOOLS": "none",
        "LLM_MAX_TOKENS": "48",
        "LLM_TEMPERATURE": "0",
    }
    server = Server(tmp_path, env=env)
    try:
        open_page(browser, server)
        connect(browser, "bob-01")
        # Every change to the transcript, recorded by the page itself: polling could miss them.
        browser.execute_script(
            "window.__seen = [];"
            "new MutationObserver(() => { const r = document.querySelector('#transcript .run:last-child');"
            " if (r) window.__seen.push([r.dataset.state, r.querySelector('.answer').textContent.length]); })"
            ".observe(document.getElementById('transcript'), {subtree: true, childList: true,"
            " characterData: true, attributes: true});"
        )
        run = send(browser, "Write two sentences about the sea.")
        assert wait_state(browser, run, {"completed", "failed", "dead", "timeout"}, LLM_WAIT) == "completed"
        final = len(run.find_element(By.CLASS_NAME, "answer").text)
        seen = browser.execute_script("return window.__seen;")
        growing = sorted({n for state, n in seen if state == "running" and n > 0})
        assert final > 0, "the model answered nothing"
        assert growing and growing[0] < final, f"no partial text before completion: {seen[-5:]}"
        assert run.find_element(By.CSS_SELECTOR, ".agent").text == "llm"
    finally:
        server.stop()


def test_a_slow_run_is_cancelled(server, browser):
    """Cancel on a slow echo run (long step delay) ends it `cancelled`, and it stays so."""
    open_page(browser, server)
    connect(browser, "carol-01")
    set_options(browser, agent="echo", delay_ms=5000)
    run = send(browser, "take your time")
    wait_state(browser, run, "running")
    cancel = browser.find_element(By.ID, "cancel")
    wait_for(browser, lambda d: cancel.is_enabled(), message="cancel never enabled")
    cancel.click()
    assert wait_state(browser, run, {"cancelled", "completed", "failed"}) == "cancelled"
    settle(1.0)
    assert run.get_attribute("data-state") == "cancelled"
    assert not cancel.is_enabled()


def test_a_refused_run_shows_its_error_code(server, browser):
    """A run the server refuses (an agent that does not exist) ends `failed` with the
    error's code shown in the run."""
    open_page(browser, server)
    connect(browser, "judy-01")
    set_options(browser, agent="no-such-agent")
    run = send(browser, "anyone there?")
    assert wait_state(browser, run, {"failed", "completed"}) == "failed"
    assert run.find_element(By.CSS_SELECTOR, ".error code").text == "unknown_agent"


def test_the_page_talks_to_no_host_but_the_gateway(server, browser):
    """Chromium's performance log shows requests to this gateway only, and the CSP in force
    blocks a fetch and a WebSocket to any other address."""
    with urllib.request.urlopen(server.page, timeout=10) as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert f"connect-src 'self' ws://{server.addr};" in csp
    open_page(browser, server)
    connect(browser, "dave-01")
    run = send(browser, "hello")
    wait_state(browser, run, "completed")
    browser.refresh()
    open_page(browser, server)
    watch_violations(browser)
    expect_console_errors(
        browser,
        r"violates the following Content Security Policy directive: \"connect-src ",
        r"^javascript \d+ Fetch API cannot load http://127\.0\.0\.2:9/x\. Refused to connect because it violates",
    )
    browser.execute_script(
        "try { new WebSocket('ws://127.0.0.2:9/'); } catch (e) {}"
        "fetch('http://127.0.0.2:9/x').catch(() => {});"
    )
    wait_for(browser, lambda d: len(violations(d)) >= 2, message="CSP let a foreign connect through")
    assert {v["directive"] for v in violations(browser)} == {"connect-src"}
    urls = request_urls(network_events(browser))
    assert any(u.startswith(f"ws://{server.addr}/") for u in urls), urls
    assert foreign(urls, server.addr) == [], urls


def test_untrusted_text_renders_as_text(server, browser):
    """Markup in a message and in the agent's answer shows literally: no element is made,
    nothing runs (`window.__xss` stays unset), nothing is fetched and no CSP check is hit."""
    open_page(browser, server)
    watch_violations(browser)
    network_events(browser)
    connect(browser, "erin-01")
    run = send(browser, XSS)
    wait_state(browser, run, "completed")
    assert run.find_element(By.CSS_SELECTOR, ".msg.user .text").text == XSS
    assert run.find_element(By.CLASS_NAME, "answer").text == "echo: " + XSS
    transcript = browser.find_element(By.ID, "transcript")
    for tag in ("img", "script", "a", "iframe"):
        assert transcript.find_elements(By.TAG_NAME, tag) == [], tag
    for link in browser.find_elements(By.TAG_NAME, "a"):
        assert not (link.get_attribute("href") or "").startswith("javascript:")
    settle(0.5)
    assert browser.execute_script("return window.__xss;") is None
    assert violations(browser) == []
    assert not [u for u in request_urls(network_events(browser)) if u.endswith("/x")]


def test_controls_are_labelled_and_fit_a_phone(tmp_path, server):
    """At a phone's width every control is labelled and visible and nothing scrolls sideways,
    even with a long unbroken answer."""
    driver = chromium(tmp_path, width=390, height=844)
    try:
        open_page(driver, server)
        for hook in ("user", "token", "message", "agent", "delay"):
            labels = driver.execute_script(f"return document.getElementById('{hook}').labels.length;")
            assert labels == 1, hook
        for hook in ("connect", "send", "cancel", "new-thread"):
            assert driver.find_element(By.ID, hook).text.strip(), hook
        connect(driver, "frank-01")
        run = send(driver, "x" * 400)
        wait_state(driver, run, "completed")
        for hook in ("user", "connect", "message", "send", "cancel", "transcript", "threads"):
            assert driver.find_element(By.ID, hook).is_displayed(), hook
        wide = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )
        assert wide <= 0, f"{wide}px of sideways scroll"
    finally:
        quit_checked(driver)


def png_size_and_colours(path):
    """A PNG's (width, height) and how many distinct byte values its pixel rows hold."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, at = b"", 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    return (width, height), len(set(zlib.decompress(idat)))


def test_screenshot_mid_run(tmp_path, server, browser):
    """The README's screenshot as `tools/screenshot` takes it (the page mid-run, a tool step
    showing, state `running`), written under the test's temporary folder, never to the tracked
    docs/chat.png: a full-size PNG with real content."""
    shot = tmp_path / "chat.png"
    screenshot_mid_run(browser, server, shot)
    (width, height), colours = png_size_and_colours(shot)
    inner = browser.execute_script("return [window.innerWidth, window.innerHeight];")
    assert (width, height) == tuple(inner), ((width, height), inner)
    assert colours > 20, "the screenshot is blank"
