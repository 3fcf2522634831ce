"""Tool approval on the chat page, in real headless Chromium: `wsexec-local serve` with
`LLM_TOOLS_APPROVAL=calculator` and a scripted model whose first round asks for the calculator and
whose second answers. The page shows the request (tool, parameters as text) with Approve / Deny;
a click answers through the library, disables both buttons and shows the outcome; after a reload
the waiting run shows its request again, once, and approving it then completes the run.
"""

import json

import pytest
from selenium.webdriver.common.by import By

from chat_page import (
    Server,
    connect,
    network_events,
    open_page,
    send,
    sent_frames,
    settle,
    violations,
    wait_for,
    wait_state,
    watch_violations,
)
from scripted_model import ScriptedModel, finish, text, tool_call

ANSWER = "It is 42."
# The local gateway runs the sweep every 60 s (template.yaml's schedule): an expired approval is
# noticed within one interval.
SWEEP_WAIT = 90
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def model_asking(arguments):
    """Round 1 asks for the calculator with `arguments`; round 2 answers."""
    return ScriptedModel([
        [tool_call("call_c1", "calculator", json.dumps(arguments)), finish("tool_calls")],
        [text("It is "), 0.2, text("42."), finish("stop")],
    ])


@pytest.fixture
def served(tmp_path):
    """`served(arguments, **env)`: a fresh model asking for the calculator with `arguments` and
    `wsexec-local serve` asking approval for it, as `(server, model)`; both stopped after the
    test."""
    running = []

    def start(arguments, **env):
        model = model_asking(arguments)
        running.append(model)
        server = serve(tmp_path, model, **env)
        running.append(server)
        return server, model

    yield start
    for process in reversed(running):
        process.stop()


def serve(tmp_path, model, **env):
    return Server(tmp_path, env={
        "LLM_PROVIDER": "openai",
        "LLM_MODEL": "scripted-model",
        "LLM_BASE_URL": model.url,
        "LLM_TOOLS": "calculator",
        "LLM_TOOLS_APPROVAL": "calculator",
        **env,
    })


def approval_box(driver, run):
    """Waits for `run`'s approval request; returns its element."""
    wait_for(driver, lambda d: run.find_elements(By.CSS_SELECTOR, ".approval"), message="no approval shown")
    (box,) = run.find_elements(By.CSS_SELECTOR, ".approval")
    return box


def buttons(box):
    return box.find_element(By.CSS_SELECTOR, "button.approve"), box.find_element(By.CSS_SELECTOR, "button.deny")


def answer_and_complete(browser, run, box, button, answer, word):
    """Clicks `button` of the request `box`: both buttons disable at once, the run completes
    with the model's answer, and the request shows it was answered `answer` (`word` in its
    outcome)."""
    yes, no = buttons(box)
    button.click()
    assert not yes.is_enabled() and not no.is_enabled()
    assert wait_state(browser, run, {"completed", "failed", "timeout", "dead"}) == "completed"
    assert run.find_element(By.CLASS_NAME, "answer").text == ANSWER
    wait_for(browser, lambda d: box.get_attribute("data-outcome") == "accepted", message="no outcome")
    assert box.get_attribute("data-answer") == answer
    assert word in box.find_element(By.CSS_SELECTOR, ".outcome").text


def test_approve_runs_the_tool_and_the_answer_arrives(served, browser):
    """The request shows the tool and its parameters (pretty JSON as text) with two enabled
    buttons and no step yet; Approve sends `approve_tool` (approved), disables both, says so;
    the calculator step runs and the model's answer completes the run."""
    server, model = served({"expression": "6*7"})
    open_page(browser, server)
    network_events(browser)
    connect(browser, "olga-01")
    run = send(browser, "What is 6*7?")
    box = approval_box(browser, run)
    assert box.find_element(By.CSS_SELECTOR, ".tool").text == "calculator"
    params = box.find_element(By.CSS_SELECTOR, "pre.params").text
    assert json.loads(params) == {"expression": "6*7"}
    assert "\n" in params, "parameters not pretty-printed"
    yes, no = buttons(box)
    assert yes.is_enabled() and no.is_enabled()
    assert run.get_attribute("data-state") == "running"
    assert run.find_elements(By.CSS_SELECTOR, "details.step") == []
    assert model.requests == 1

    answer_and_complete(browser, run, box, yes, "approved", "Approved")
    (step,) = run.find_elements(By.CSS_SELECTOR, "details.step")
    assert step.find_element(By.CLASS_NAME, "tool").get_attribute("textContent") == "calculator"
    assert '"result": 42' in step.find_element(By.CLASS_NAME, "result").get_attribute("textContent")

    answers = [f for f in sent_frames(network_events(browser)) if f.get("type") == "approve_tool"]
    assert len(answers) == 1, answers
    assert answers[0]["run_id"] == run.get_attribute("data-run-id")
    assert answers[0]["call_id"] == box.get_attribute("data-call-id")
    assert answers[0]["approved"] is True


def test_deny_runs_nothing_and_markup_in_parameters_stays_text(served, browser):
    """Parameters carrying markup show literally (no element made, nothing runs, no CSP report);
    Deny disables both buttons, no tool step appears, the model is told the user declined, and
    its answer completes the run."""
    server, model = served({"expression": XSS})
    open_page(browser, server)
    watch_violations(browser)
    connect(browser, "pavel-01")
    run = send(browser, "Compute this")
    box = approval_box(browser, run)
    assert json.loads(box.find_element(By.CSS_SELECTOR, "pre.params").text) == {"expression": XSS}
    for tag in ("img", "script"):
        assert browser.find_element(By.ID, "transcript").find_elements(By.TAG_NAME, tag) == [], tag
    _, no = buttons(box)
    answer_and_complete(browser, run, box, no, "denied", "Denied")
    assert run.find_elements(By.CSS_SELECTOR, "details.step") == []
    told = [m for m in model.bodies[1]["messages"] if m["role"] == "tool"]
    assert len(told) == 1 and "the user declined this call" in told[0]["content"], told
    settle(0.3)
    assert browser.execute_script("return window.__xss;") is None
    assert violations(browser) == []


def test_a_reload_while_waiting_shows_the_request_again_and_approving_completes(served, browser):
    """With `RUN_DISPATCH=auto`: the page is reloaded while the run waits; reopening the thread
    shows the same request once, with enabled buttons; Approve then completes the run with the
    answer, and the model was asked exactly twice."""
    server, model = served({"expression": "6*7"}, RUN_DISPATCH="auto")
    open_page(browser, server)
    connect(browser, "quinn-01")
    run = send(browser, "What is 6*7?")
    box = approval_box(browser, run)
    run_id, thread_id = run.get_attribute("data-run-id"), run.get_attribute("data-thread-id")
    call_id = box.get_attribute("data-call-id")
    assert run_id and thread_id and call_id

    browser.refresh()
    open_page(browser, server)
    browser.find_element(By.ID, "connect").click()
    row = f'#threads li[data-thread-id="{thread_id}"] button'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), message="thread not listed")
    browser.find_element(By.CSS_SELECTOR, row).click()
    found = f'#transcript [data-run-id="{run_id}"] .approval[data-call-id="{call_id}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, found), message="request not shown again")
    settle(0.5)  # a replayed duplicate would arrive now
    assert len(browser.find_elements(By.CSS_SELECTOR, "#transcript .approval")) == 1
    run = browser.find_element(By.CSS_SELECTOR, f'#transcript [data-run-id="{run_id}"]')
    assert run.get_attribute("data-state") == "running"
    box = run.find_element(By.CSS_SELECTOR, ".approval")
    assert json.loads(box.find_element(By.CSS_SELECTOR, "pre.params").text) == {"expression": "6*7"}
    yes, no = buttons(box)
    assert yes.is_enabled() and no.is_enabled()

    yes.click()
    assert wait_state(browser, run, {"completed", "failed", "timeout", "dead"}) == "completed"
    assert run.find_element(By.CLASS_NAME, "answer").text == ANSWER
    assert box.get_attribute("data-answer") == "approved"
    assert len(run.find_elements(By.CSS_SELECTOR, "details.step")) == 1
    assert model.requests == 2


def test_an_unanswered_request_ends_the_run_timeout_and_closes_the_buttons(served, browser):
    """`APPROVAL_TIMEOUT_MS=1000`: nobody answers; the sweep (every 60 s under wsexec-local, as
    the template's schedule) ends the run `timeout` with `approval_timeout`, which the page shows,
    and the request's buttons are disabled, saying it was not answered. The model is not asked
    again."""
    server, model = served({"expression": "6*7"}, APPROVAL_TIMEOUT_MS="1000", RUN_DISPATCH="auto")
    open_page(browser, server)
    connect(browser, "ruth-01")
    run = send(browser, "What is 6*7?")
    box = approval_box(browser, run)
    assert wait_state(browser, run, {"timeout", "completed", "failed", "dead"}, SWEEP_WAIT) == "timeout"
    assert run.find_element(By.CSS_SELECTOR, ".error code").text == "approval_timeout"
    yes, no = buttons(box)
    assert not yes.is_enabled() and not no.is_enabled()
    assert box.get_attribute("data-outcome") == "closed"
    assert "not answered" in box.find_element(By.CSS_SELECTOR, ".outcome").text.lower()
    assert model.requests == 1
