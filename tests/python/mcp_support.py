"""The real MCP server for the Python suites: `tests/support/mcp_server.py` (the official Python
SDK, `mcp` from PyPI) on a free loopback port, and what it received. The Rust suites' twin is
`tests/support/mcp.rs`; both drive the same server script.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import websockets

from chat_page import ROOT, WAIT

# The header the tests configure, and its value (a log scan looks for the value).
API_KEY_HEADER = "X-Api-Key"
API_KEY = "mcp-secret-key-7f3a9c"
# The Python with `mcp` installed: the one running the tests (tools/test installs it from
# tools/requirements.txt), unless `WSEXEC_MCP_PYTHON` names another.
PYTHON = os.environ.get("WSEXEC_MCP_PYTHON", sys.executable)


class McpServer:
    """`mcp_server.py` on a free loopback port; `url` is its Streamable HTTP endpoint."""

    def __init__(self):
        script = ROOT / "tests" / "support" / "mcp_server.py"
        self.proc = subprocess.Popen([PYTHON, str(script)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        assert line.isdigit(), f"the MCP server printed no port (is `mcp` installed for {PYTHON}?)"
        self.base = f"http://127.0.0.1:{line}"
        self.url = f"{self.base}/mcp"
        # The port is bound before the server listens: wait until it accepts.
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(line)), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the MCP server never listened"
                time.sleep(0.05)

    def entry(self, name):
        """An `MCP_SERVERS` entry for this server named `name`, with the test credential."""
        return {"name": name, "url": self.url, "headers": {API_KEY_HEADER: API_KEY}}

    def calls(self):
        """Every request received: `{http, headers, method?, tool?, arguments?}`."""
        with urllib.request.urlopen(f"{self.base}/calls", timeout=WAIT) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=WAIT)


async def one_run(url, user, question, wait=WAIT):
    """Connects as `user`, asks `question`; the run's frames up to its end."""
    frames = []
    async with websockets.connect(f"{url}/?user_id={user}") as ws:
        await ws.send(json.dumps({"type": "start_agent", "request_id": f"r-{user}",
                                  "payload": {"user_request": question}}))
        while not frames or frames[-1]["type"] not in ("agent_completed", "agent_error"):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), wait)))
    return frames
