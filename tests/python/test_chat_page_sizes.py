"""The chat page with an answer longer than one API Gateway message (128 KiB), in real headless
Chromium: `agent_completed` then carries a cut result marked `truncated`, and the page keeps
the whole answer it streamed (issue 21, item 2).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from selenium.webdriver.common.by import By

from chat_page import Server, connect, open_page, send, wait_state

# Longer than a message, shorter than a stored result (256 KiB): only the pushed result is cut.
ANSWER_BYTES = 200_000
CHUNK = "abcdefghij" * 200


class FakeModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible Chat Completions endpoint streaming ANSWER_BYTES of text."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        event = lambda obj: self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        for _ in range(ANSWER_BYTES // len(CHUNK)):
            event({"model": "fake", "choices": [{"index": 0, "delta": {"content": CHUNK}}]})
        event({"model": "fake", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *_):
        pass


@pytest.fixture
def model():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeModel)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


@pytest.fixture
def server(tmp_path, model):
    """The gateway with the `llm` agent on the fake model; requested before `browser`, so the
    page is closed (and checked for console errors) before the server stops."""
    env = {"LLM_PROVIDER": "openai", "LLM_MODEL": "fake", "LLM_BASE_URL": model, "LLM_TOOLS": "none"}
    s = Server(tmp_path, env=env)
    yield s
    s.stop()


def test_an_answer_longer_than_a_message_stays_whole(server, browser):
    """A 200 KB streamed answer completes with its full text on the page, although the
    `agent_completed` frame could carry only its start."""
    open_page(browser, server)
    connect(browser, "erin-01")
    run = send(browser, "Say a lot.")
    assert wait_state(browser, run, {"completed", "failed", "timeout"}) == "completed"
    answer = run.find_element(By.CLASS_NAME, "answer").get_attribute("textContent")
    assert len(answer) == ANSWER_BYTES
    assert answer == CHUNK * (ANSWER_BYTES // len(CHUNK))
