"""The `llm` agent with tools offered (the default) through `wsexec-local serve`, on a scripted
model that writes a preamble, calls `current_time`, then answers: the text streams from the first
token, the preamble's round is withdrawn with `agent_text_discarded`, for a `websockets` client
and for the chat page in Chromium; and serve refuses a plain-`http://` model host at start-up.
"""

import asyncio
import json
import os
import subprocess
import time

import pytest
import websockets
from selenium.webdriver.common.by import By

from chat_page import BIN, WAIT, Server, connect, open_page, send, wait_state
from scripted_model import ScriptedModel, finish, kept_text, text, tool_call

# Long enough that "before the model wrote the rest" cannot be luck on two busy cores.
PAUSE = 1.5
PREAMBLE = "Let me check the time."
ANSWER = "It is noon."


def scripts():
    """Round 1: a preamble in two chunks, then a tool call; round 2: the answer in two chunks."""
    return [
        [text("Let me "), PAUSE, text("check the time."), tool_call("t1", "current_time", "{}"),
         finish("tool_calls")],
        [text("It is "), PAUSE, text("noon."), finish("stop")],
    ]


@pytest.fixture
def scripted(tmp_path):
    """`serve` with the llm agent (every built-in tool offered) on a scripted model; both
    stopped after the test (after the browser, when a test asks for it second)."""
    model = ScriptedModel(scripts())
    env = {"LLM_PROVIDER": "openai", "LLM_MODEL": "scripted-model", "LLM_BASE_URL": model.url}
    server = Server(tmp_path, env=env)
    yield server, model
    server.stop()
    model.stop()


async def one_run(url):
    """Runs one request; every frame with the time it arrived."""
    frames = []
    async with websockets.connect(f"{url}/?user_id=dora-01") as ws:
        await ws.send(json.dumps({"type": "start_agent", "request_id": "r-time",
                                  "payload": {"user_request": "What time is it?"}}))
        while not frames or frames[-1][1]["type"] not in ("agent_completed", "agent_error"):
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            frames.append((time.monotonic(), frame))
    return frames


def test_a_tool_round_streams_at_once_and_is_discarded(scripted):
    """Through serve with a websockets client: the first delta arrives before the model wrote
    the rest of its round, `agent_text_discarded {round: 1, reason: "tool_call"}` withdraws the
    preamble (shown again as thinking), and the deltas kept equal the result's text."""
    server, model = scripted
    timed = asyncio.run(one_run(f"ws://{server.addr}"))
    frames = [f for _, f in timed]
    kinds = [f["type"] for f in frames]
    assert kinds[-1] == "agent_completed", kinds
    first_delta = next(at for at, f in timed if f["type"] == "agent_delta")
    rest_written = next(at for at, step in model.sent if step == text("check the time."))
    assert first_delta < rest_written, "the first delta waited for the rest of the round"
    at = kinds.index("agent_text_discarded")
    assert frames[at]["payload"] == {"round": 1, "reason": "tool_call"}
    assert frames[at + 1]["type"] == "agent_thinking"
    assert frames[at + 1]["payload"]["thought"] == PREAMBLE
    assert all("round" in f["payload"] for f in frames if f["type"] == "agent_delta")
    assert kept_text(frames) == frames[-1]["payload"]["result"]["text"] == ANSWER


def test_the_page_drops_a_discarded_round(scripted, browser):
    """In Chromium: the preamble shows in the answer as it streams, is removed when its round is
    discarded (the answer then holds only the next round's text while the run still runs), is
    shown as a thinking step instead, and the completed answer is the result."""
    server, _ = scripted
    open_page(browser, server)
    connect(browser, "erin-01")
    # Every change to the transcript, recorded by the page itself: polling could miss them.
    browser.execute_script(
        "window.__seen = [];"
        "new MutationObserver(() => { const r = document.querySelector('#transcript .run:last-child');"
        " if (r) window.__seen.push([r.dataset.state, r.querySelector('.answer').textContent]); })"
        ".observe(document.getElementById('transcript'), {subtree: true, childList: true,"
        " characterData: true, attributes: true});"
    )
    run = send(browser, "What time is it?")
    assert wait_state(browser, run, {"completed", "failed", "dead", "timeout"}) == "completed"
    seen = browser.execute_script("return window.__seen;")
    running = [answer for state, answer in seen if state == "running"]
    assert "Let me " in running, f"the preamble never streamed: {running}"
    preamble_at = running.index("Let me ")
    assert "It is " in running[preamble_at:], f"the discarded round stayed: {running}"
    assert run.find_element(By.CLASS_NAME, "answer").text == ANSWER
    assert PREAMBLE in run.find_element(By.CLASS_NAME, "thought").text


def test_serve_refuses_a_plain_http_model_host(tmp_path):
    """`LLM_BASE_URL` with `http://` to a host other than this machine stops `serve` at start-up
    with an error naming the variable (and never the key)."""
    key = "sk-live-cleartext-0123456789"
    env = dict(os.environ, LLM_PROVIDER="openai", LLM_MODEL="m", LLM_API_KEY=key,
               LLM_BASE_URL="http://model.example.com/v1", RUST_LOG="warn")
    out = subprocess.run(
        [BIN, "serve", "--port", "0", "--dev-auth", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=WAIT, env=env, cwd=tmp_path,
    )
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "LLM_BASE_URL" in out.stderr and "https://" in out.stderr, out.stderr
    assert key not in out.stderr + out.stdout
