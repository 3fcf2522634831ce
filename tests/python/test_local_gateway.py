"""The built `wsexec-local serve`, driven by the Python `websockets` client.

Run after `cargo build --features local`:
    python3 -m pytest -q tests/python
The binary is `$WSEXEC_LOCAL_BIN` (default `target/debug/wsexec-local`).
"""

import asyncio
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import threading

import pytest
import websockets

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("WSEXEC_LOCAL_BIN", str(ROOT / "target" / "debug" / "wsexec-local"))
WAIT = 15
RUN_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
LISTENING = re.compile(r"^wsexec-local listening on (ws://127\.0\.0\.1:\d+)$")


class Server:
    """A `wsexec-local serve --port 0 --dev-auth` process and the URL it printed."""

    def __init__(self, tmp_path):
        env = dict(
            os.environ,
            RUST_LOG="warn",
            AWS_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="AKIDLOCAL",
            AWS_SECRET_ACCESS_KEY="local-secret",
            AWS_EC2_METADATA_DISABLED="true",
        )
        self.log = open(tmp_path / "stderr.log", "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--port", "0", "--dev-auth", "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        lines = queue.Queue()
        # Keep reading stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        try:
            first = lines.get(timeout=WAIT).strip()
        except queue.Empty:
            self.stop()
            raise AssertionError("wsexec-local printed no address line")
        match = LISTENING.match(first)
        assert match, f"unexpected first line: {first!r}"
        self.url = match.group(1)

    def interrupt(self):
        """Ctrl-C: a graceful shutdown."""
        self.proc.send_signal(signal.SIGINT)

    def stop(self):
        if self.proc.poll() is None:
            self.interrupt()
        try:
            return self.proc.wait(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


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
