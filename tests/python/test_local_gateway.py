"""The built `wsexec-local serve`, driven by the Python `websockets` client.

Run after `cargo build --features local`:
    python3 -m pytest -q tests/python
The binary is `$WSEXEC_LOCAL_BIN` (default `target/debug/wsexec-local`).
"""

import asyncio
import json

import pytest
import websockets

import chat_page

WAIT = 15
RUN_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


class Server(chat_page.Server):
    """The chat page tests' `wsexec-local serve` process, addressed by its WebSocket URL."""

    @property
    def url(self):
        return f"ws://{self.addr}"


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


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
