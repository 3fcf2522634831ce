"""Web pages of other sites against `wsexec-local serve --dev-auth`, in real headless Chromium:
a foreign page's WebSocket and its `no-cors` fetch to the Invoke API, and DNS rebinding.

`evil.example` resolves to 127.0.0.1 inside this Chromium only (`--host-resolver-rules`), as an
attacker's DNS would make it: nothing leaves the machine.
"""

import http.server
import json
import threading

import pytest

from chat_page import (
    ROOT,
    chromium,
    expect_console_errors,
    quit_checked,
    wait_for,
)

EVIL = "evil.example"

# The attacker's page: a WebSocket as any dev user, and a forged `$connect` posted to the
# Invoke API the way a page can (`no-cors`: it cannot read the answer, only cause effects).
PAGE = """<!doctype html><title>evil</title><script>
const gw = %(gw)s, forged = %(forged)s;
window.__out = {};
const ws = new WebSocket(`ws://${gw}/?user_id=alice-01`);
ws.onopen = () => { window.__out.ws = "open"; };
ws.onerror = () => { window.__out.ws = "refused"; };
fetch(`http://${gw}/2015-03-31/functions/wsexec/invocations`,
      {method: "POST", mode: "no-cors", body: forged})
  .then(() => { window.__out.fetch = "sent"; }, () => { window.__out.fetch = "failed"; });
</script>"""


@pytest.fixture
def evil_site(logged_server):
    """A site serving the attacker's page on a port of its own; yields its port."""
    event = json.loads((ROOT / "events" / "connect-authorizer.json").read_text())
    event["requestContext"]["authorizer"] = {"principalId": "alice-01"}
    body = (PAGE % {"gw": json.dumps(logged_server.addr), "forged": json.dumps(json.dumps(event))}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def rebound(tmp_path):
    """Chromium in which `evil.example` resolves to 127.0.0.1, quit after the test."""
    driver = chromium(tmp_path, flags=[f"--host-resolver-rules=MAP {EVIL} 127.0.0.1"])
    yield driver
    quit_checked(driver)


def test_a_foreign_page_cannot_connect_or_invoke(logged_server, evil_site, rebound):
    """A page of another site opens a WebSocket as `alice-01` and posts a forged `$connect` to
    the Invoke API: the WebSocket is refused (403) and neither reaches the function."""
    expect_console_errors(
        rebound,
        r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/\?user_id=alice-01' failed",
        r"/2015-03-31/functions/wsexec/invocations - Failed to load resource: .* 403",
    )
    rebound.get(f"http://{EVIL}:{evil_site}/")
    wait_for(rebound, lambda d: d.execute_script("const o = window.__out; return o && o.ws && o.fetch;"))
    assert rebound.execute_script("return window.__out.ws;") == "refused"
    assert logged_server.connection_ids("alice-01") == [], "a foreign page reached $connect"


def test_dns_rebinding_gets_403(logged_server, rebound):
    """The gateway reached under a name the attacker's DNS points at 127.0.0.1 answers 403:
    the page never loads there, so its scripts could never talk to the gateway as same-origin."""
    port = logged_server.addr.rsplit(":", 1)[1]
    expect_console_errors(rebound, r"status of 403")
    rebound.get(f"http://{EVIL}:{port}/")
    assert "Forbidden" in rebound.page_source
    assert rebound.find_elements("id", "connect") == []
    assert logged_server.connection_ids("alice-01") == []
