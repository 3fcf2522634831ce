"""The built `wsexec-local serve`, driven by the Python `websockets` client.

Run after `cargo build --features local`:
    python3 -m pytest -q tests/python
The binary is `$WSEXEC_LOCAL_BIN` (default `target/debug/wsexec-local`).
"""

import asyncio
import http.client
import json
import subprocess

import websockets

import chat_page

WAIT = 15
RUN_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def golden_path(url):
    async with websockets.connect(f"{url}/?user_id=alice-01") as ws:
        request = {"type": "start_agent", "request_id": "req-py-1", "payload": {"user_request": "Summarise the week"}}
        await ws.send(json.dumps(request))
        events = [await recv_json(ws) for _ in RUN_EVENTS]
        assert [e["type"] for e in events] == RUN_EVENTS
        run_id = events[0]["run_id"]
        assert all(e["run_id"] == run_id and e["request_id"] == "req-py-1" for e in events)
        assert events[-1]["payload"]["result"]["reply"] == "echo: Summarise the week"

        await ws.send(json.dumps({"type": "get_execution", "run_id": run_id}))
        execution = await recv_json(ws)
        assert execution["type"] == "execution"
        assert execution["payload"]["state"] == "completed"
    assert ws.close_code == 1000


def test_golden_path(server):
    """connect -> start_agent -> five events in order -> get_execution says completed -> close."""
    asyncio.run(golden_path(server.url))


async def closed_by_shutdown(server):
    async with websockets.connect(f"{server.url}/?user_id=alice-01") as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        server.interrupt()
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert ws.close_code == 1001


def test_ctrl_c_closes_connections_with_1001(server):
    """Ctrl-C closes open connections with 1001 Going away and the process exits cleanly."""
    asyncio.run(closed_by_shutdown(server))
    assert server.stop() == 0


def status_of(addr, method, path, headers=None, body=None):
    """The HTTP status `addr` answers `method path` with (a `Host` in `headers` replaces the real one)."""
    conn = http.client.HTTPConnection(addr, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


async def upgrade_status(url, origin):
    """101 when a WebSocket from a page of `origin` opens (and answers a ping), else the refusal's status."""
    try:
        async with websockets.connect(url, origin=origin) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            assert (await recv_json(ws))["type"] == "pong"
            return 101
    except websockets.exceptions.InvalidStatus as e:
        return e.response.status_code


def test_foreign_pages_and_host_names_get_403(tmp_path):
    """`serve --allow-origin`: a WebSocket from a foreign page's origin gets 403, one from a
    loopback or listed origin (or none) connects; the page under a foreign host name (DNS
    rebinding) gets 403, under `localhost` 200."""
    server = chat_page.Server(tmp_path, args=["--allow-origin", "https://app.example:8443"])
    try:
        url = f"{server.url}/?user_id=alice-01"
        for origin, status in [
            ("http://evil.example", 403),
            ("null", 403),
            ("http://localhost:5173", 101),
            ("https://app.example:8443", 101),
            (None, 101),
        ]:
            assert asyncio.run(upgrade_status(url, origin)) == status, origin
        port = server.addr.rsplit(":", 1)[1]
        assert status_of(server.addr, "GET", "/", {"Host": f"evil.example:{port}"}) == 403
        assert status_of(server.addr, "GET", "/", {"Host": f"localhost:{port}"}) == 200
    finally:
        server.stop()
    bad = subprocess.run(
        [chat_page.BIN, "serve", "--port", "0", "--allow-origin", "https://app.example/chat"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert bad.returncode == 2 and "is not an origin" in bad.stderr, bad.stderr


def forged(file):
    """A sample event from `events/` naming `alice-01` through a made-up authorizer."""
    event = json.loads((chat_page.ROOT / "events" / file).read_text())
    event["requestContext"]["authorizer"] = {"principalId": "alice-01"}
    return json.dumps(event).encode()


def test_forged_route_events_on_invoke_are_refused_and_async_dispatch_works(tmp_path):
    """A forged `$connect` and `$default` posted to the Invoke API get 403, from a plain client
    and as a page's `no-cors` fetch sends them; the function's own signed worker invocations
    still drive an async run through the same API."""
    server = chat_page.Server(tmp_path, env={"RUN_DISPATCH": "async"})
    try:
        path = "/2015-03-31/functions/wsexec/invocations"
        page = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example"}
        client = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"}
        for headers in (client, page):
            for file in ("connect-authorizer.json", "message-list-executions.json"):
                assert status_of(server.addr, "POST", path, headers, forged(file)) == 403, file
        asyncio.run(golden_path(server.url))
    finally:
        server.stop()


async def options_refused(url):
    async with websockets.connect(f"{url}/?user_id=alice-01") as ws:
        for agent in ("echo", "llm"):
            request = {
                "type": "start_agent",
                "request_id": f"opt-{agent}",
                "agent": agent,
                "payload": {"user_request": "hi", "options": {"bogus": 1}},
            }
            await ws.send(json.dumps(request))
            reply = await recv_json(ws)
            assert reply["type"] == "error", reply
            assert reply["payload"]["code"] == "invalid_field", reply
            assert "bogus" in reply["payload"]["message"], reply
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"


def test_unknown_agent_options_are_refused_naming_the_option(tmp_path):
    """`{"bogus": 1}` as an option of `echo` or `llm` is refused `invalid_field` naming it,
    before any run or model request (the model's port here is closed), and the socket stays usable."""
    env = {
        "LLM_PROVIDER": "openai",
        "LLM_MODEL": "smollm2",
        "LLM_BASE_URL": "http://127.0.0.1:9/v1",
    }
    server = chat_page.Server(tmp_path, env=env)
    try:
        asyncio.run(options_refused(server.url))
    finally:
        server.stop()


def test_logs_are_json_lines(tmp_path):
    """What the README says: the local tool logs JSON lines (stderr), each with `timestamp`,
    `level` and `message`, and one `invocation` line per invocation; metrics are EMF JSON."""
    server = chat_page.Server(tmp_path, rust_log="info")
    try:
        asyncio.run(golden_path(server.url))
    finally:
        server.stop()
    lines = [l for l in server.log_path.read_text().splitlines() if l.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}")
    logs = [r for r in records if "_aws" not in r]
    assert all({"timestamp", "level", "message"} <= r.keys() for r in logs), logs[:3]
    routes = {r.get("route") for r in logs if r["message"] == "invocation"}
    assert {"$connect", "$default", "$disconnect"} <= routes, routes
    assert any("_aws" in r for r in records), "no EMF metrics"
