"""The README's local examples, read out of README.md and run as written against the built
`wsexec-local` (only the port is this test server's), so the README cannot drift from the tool.
"""

import asyncio
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

import pytest
import websockets

from chat_page import BIN, LLM_WAIT, ROOT, WAIT, Server
from llm_proxy import Proxy
from mcp_support import PYTHON as MCP_PYTHON
from mcp_support import one_run

README = (ROOT / "README.md").read_text()
# Every fenced code block: (language, text).
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)
DOCUMENTED_ADDR = "127.0.0.1:3001"


def block(language, marker):
    """The one `language` block containing `marker`."""
    found = [text for lang, text in BLOCKS if lang == language and marker in text]
    assert len(found) == 1, f"expected one {language} block with {marker!r}, found {len(found)}"
    return found[0]


def test_python_example_runs_every_time(tmp_path, server):
    """The Python example, run twice against one server: both runs end with `completed` (it
    once hung the second time, its fixed `request_id` answered with the first run's snapshot)."""
    code = block("python", "websockets.connect(")
    assert DOCUMENTED_ADDR in code
    script = tmp_path / "example.py"
    script.write_text(code.replace(DOCUMENTED_ADDR, server.addr))
    for attempt in (1, 2):
        try:
            out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"run {attempt} hung; it printed:\n{e.stdout}")
        assert out.returncode == 0, f"run {attempt}:\n{out.stdout}\n{out.stderr}"
        assert "agent_completed" in out.stdout and out.stdout.split()[-1] == "completed", (attempt, out.stdout)


async def websocat_session(code, addr):
    """Sends the session's frames (lines starting with `{`) in order; a `# a, b` line after a
    frame lists the event types it must bring, else it must bring one reply (not an error)."""
    lines = code.strip().splitlines()
    url = re.match(r"websocat '([^']+)'", lines[0]).group(1).replace(DOCUMENTED_ADDR, addr)
    run_id = None
    async with websockets.connect(url) as ws:
        for i, line in enumerate(lines[1:], start=1):
            if not line.startswith("{"):
                continue
            frame = line.replace("<run_id from the events>", run_id or "")
            await ws.send(frame)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            expected = [t.strip() for t in nxt[1:].split(",")] if nxt.startswith("#") else [None]
            for want in expected:
                event = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert event["type"] != "error", (frame, event)
                assert want in (None, event["type"]), (frame, want, event)
                run_id = event.get("run_id", run_id)


def test_websocat_session_frames_answer_as_commented(server):
    """The `websocat` session's frames, sent by a client: the start brings the five commented
    events in order, and the `get_execution` of that run answers."""
    code = block("sh", "websocat 'ws://")
    asyncio.run(websocat_session(code, server.addr))


def test_invoke_commands_print_what_their_comments_say(tmp_path):
    """The `invoke` commands in order, in one data folder, with the README's `export`: each
    exits 0 and prints every `"key":value` its comment names."""
    code = block("sh", "export JWT_SECRET=")
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    runs = 0
    for line in code.strip().splitlines():
        if line.startswith("export "):
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value
            continue
        if not line.startswith("$W "):
            continue
        command, _, comment = line.partition("#")
        event = str(ROOT / shlex.split(command)[1])
        out = subprocess.run([BIN, "invoke", event], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=WAIT)
        assert out.returncode == 0, f"{line}\n{out.stdout}\n{out.stderr}"
        printed = out.stdout.replace('\\"', '"')  # a reply's body is JSON inside a JSON string
        for fragment in re.findall(r'"\w+":(?:"[^"]*"|\d+)', comment):
            assert fragment in printed, f"{line}: {fragment} not in\n{out.stdout}"
        runs += 1
    assert runs >= 5, "the invoke block lost its commands"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def walkthrough_env(code, mcp_port, llm):
    """The `VAR=value` words before `cargo run` in the walk-through's serve command, with this
    test's ports: its MCP server's and the model proxy's."""
    command = next(c for c in code.replace("\\\n", " ").splitlines() if "MCP_SERVERS=" in c)
    words = shlex.split(command)
    env = dict(w.split("=", 1) for w in words[: words.index("cargo")])
    assert words[words.index("cargo"):][-2:] == ["serve", "--dev-auth"], words
    env["MCP_SERVERS"] = env["MCP_SERVERS"].replace("8765", str(mcp_port))
    assert env.pop("LLM_BASE_URL") == "http://127.0.0.1:8089/v1"
    return {**env, "LLM_BASE_URL": llm}


def test_mcp_walkthrough_runs_as_written(tmp_path, llm_url):
    """The MCP walk-through as written (only the ports are this test's): its server, built with
    the official Python SDK, runs; serve with its `MCP_SERVERS` offers the real model
    `orders__order_status` with the docstring as description; the run completes; and if the
    model called the tool, its result is the server's."""
    code = block("python", "from mcp.server.mcpserver import MCPServer")
    port = free_port()
    script = tmp_path / "orders_mcp.py"
    script.write_text(code.replace("port=8765", f"port={port}"))
    sh = block("sh", "MCP_SERVERS='[")
    assert "python orders_mcp.py &" in sh
    mcp = subprocess.Popen([MCP_PYTHON, str(script)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    proxy = Proxy(llm_url, pace_bytes=1 << 20, pace_secs=0)
    server = None
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert mcp.poll() is None and time.monotonic() < deadline, "the README's MCP server never listened"
                time.sleep(0.1)
        env = walkthrough_env(sh, port, proxy.url)
        server = Server(tmp_path, env={**env, "LLM_MAX_TOKENS": "48"})
        frames = asyncio.run(one_run(server.url, "walk-01", "Where is order A-17?", LLM_WAIT))
    finally:
        if server:
            server.stop()
        proxy.stop()
        mcp.kill()
        mcp.wait(timeout=WAIT)
    assert frames[-1]["type"] == "agent_completed", frames[-1]
    offered = {t["function"]["name"]: t["function"] for t in proxy.bodies[0]["tools"]}
    tool = offered["orders__order_status"]
    assert tool["description"] == "Tells where an order is, by its id (for example A-17)."
    assert tool["parameters"]["properties"]["order_id"]["type"] == "string"
    for done in (f["payload"] for f in frames if f["type"] == "tool_completed"):
        if done["tool_name"] == "orders__order_status":
            assert "arrives on Friday" in json.dumps(done["result"]), done
