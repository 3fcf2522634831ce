"""The chat page's reconnect-and-resume, in real headless Chromium.

Needs the server's `resume` command (issue 14): `tools/test` leaves this file out until it is
merged, and the lead enables it then. Without `resume` the page falls back to polling
`get_execution`, which this test counts as a failure: it proves the resume path.
"""

import urllib.request

from selenium.webdriver.common.by import By

from chat_page import (
    WAIT,
    conn_state,
    connect,
    network_events,
    open_page,
    send,
    sent_frames,
    set_options,
    wait_for,
    wait_state,
)


def test_a_dropped_socket_reconnects_and_resumes_the_same_run(logged_server, browser):
    """`DELETE /@connections/{id}` mid-run closes the page's socket; the page reconnects,
    sends `resume` with the last seq it saw, and the same run element completes in place."""
    user = "heidi-01"
    open_page(browser, logged_server)
    network_events(browser)
    connect(browser, user)
    set_options(browser, agent="echo", delay_ms=3000)
    run = send(browser, "survive a drop")
    wait_for(browser, lambda d: run.find_elements(By.CSS_SELECTOR, "details.step"), message="no step")
    run_id = run.get_attribute("data-run-id")
    assert run.get_attribute("data-state") == "running"

    (connection_id,) = logged_server.connection_ids(user)
    drop = urllib.request.Request(f"{logged_server.page}@connections/{connection_id}", method="DELETE")
    with urllib.request.urlopen(drop, timeout=WAIT) as resp:
        assert resp.status == 204
    wait_for(browser, lambda d: conn_state(d) != "connected", message="socket never dropped")
    wait_for(browser, lambda d: conn_state(d) == "connected", message="never reconnected")
    assert len(logged_server.connection_ids(user)) == 2, "the page did not open a new connection"

    assert wait_state(browser, run, {"completed", "failed", "dead", "cancelled"}) == "completed"
    same = browser.find_elements(By.CSS_SELECTOR, f'#transcript [data-run-id="{run_id}"]')
    assert len(same) == 1, "the run was rendered twice"
    assert same[0].find_element(By.CLASS_NAME, "answer").text == "echo: survive a drop"
    assert len(same[0].find_elements(By.CSS_SELECTOR, "details.step")) == 1, "a step was replayed"

    frames = sent_frames(network_events(browser))
    resumes = [f for f in frames if f.get("type") == "resume"]
    assert resumes and resumes[0]["run_id"] == run_id and resumes[0]["after_seq"] >= 1, frames
    assert not [f for f in frames if f.get("type") == "get_execution"], "completed by polling"
