"""Durable runs through `wsexec-local serve` with `RUN_DISPATCH=async`: a server killed with
`kill -9` while it drives a run, and started again on the same data directory, continues the run
from its step journal (its Invoke API and its own reads of stale runs, as deployed), for a
`websockets` client that reconnects and resumes.
"""

import asyncio
import json

import websockets

from chat_page import WAIT, Server
from scripted_model import ScriptedModel, finish, kept_text, text, tool_call

# A short heartbeat deadline, so the restarted server finds the killed one's run stale soon.
HEARTBEAT_MS = 2000
USER = "erin-01"


def scripts():
    """Round 1 calls `current_time`; round 2 streams and then hangs (the server is killed
    there); round 2 again, for the continuation, answers."""
    return [
        [tool_call("t1", "current_time", "{}"), finish("tool_calls")],
        [text("The time is "), 120, text("never sent")],
        [text("It is "), text("noon."), finish("stop")],
    ]


async def frames_until(ws, frames, done):
    """Reads run events (frames with a `seq`) into `frames` until one satisfies `done`."""
    while not any(done(f) for f in frames):
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if "seq" in frame:
            frames.append(frame)
    return frames


async def start_and_kill(server):
    """Starts the run; once round 2 has streamed text, kills the server (SIGKILL)."""
    frames = []
    async with websockets.connect(f"{server.url}/?user_id={USER}") as ws:
        await ws.send(json.dumps({"type": "start_agent", "request_id": "r-durable",
                                  "payload": {"user_request": "What time is it?"}}))
        in_round_2 = lambda f: f["type"] == "agent_delta" and f["payload"]["round"] == 2
        await frames_until(ws, frames, in_round_2)
        server.proc.kill()
        server.proc.wait(WAIT)
    return frames


async def resume_after_restart(server, run_id, after_seq):
    """Reconnects to the restarted server, follows the run (`resume`) and reads it once it is
    stale (`get_execution`, which continues it); the run events that follow."""
    async with websockets.connect(f"{server.url}/?user_id={USER}") as ws:
        await ws.send(json.dumps({"type": "resume", "run_id": run_id, "after_seq": after_seq}))
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert snapshot["type"] == "execution", snapshot
        assert snapshot["payload"]["state"] == "running", snapshot
        await asyncio.sleep(HEARTBEAT_MS / 1000 + 0.5)
        await ws.send(json.dumps({"type": "get_execution", "run_id": run_id}))
        return await frames_until(ws, [], lambda f: f["type"] in ("agent_completed", "agent_error"))


def test_a_killed_server_continues_the_run_after_restart(tmp_path):
    """`kill -9` of `serve` during a run's second model round, then `serve` again on the same
    data directory: the run is continued from its journal and completes. Round 1 was requested
    once and the tool ran once (the journaled result is what both round-2 requests carry); the
    interrupted round's text is withdrawn (`redo`); the text the client kept across both
    servers equals `result.text`; every `seq` arrives once, in order."""
    model = ScriptedModel(scripts())
    env = {"LLM_PROVIDER": "openai", "LLM_MODEL": "scripted-model", "LLM_BASE_URL": model.url,
           "RUN_DISPATCH": "async", "HEARTBEAT_DEADLINE_MS": str(HEARTBEAT_MS)}
    try:
        first = Server(tmp_path, env=env)
        try:
            before = asyncio.run(start_and_kill(first))
        finally:
            first.stop()
        run_id = before[0]["run_id"]
        second = Server(tmp_path, env=env)
        try:
            after = asyncio.run(resume_after_restart(second, run_id, before[-1]["seq"]))
        finally:
            second.stop()
    finally:
        model.stop()

    frames = before + after
    kinds = [f["type"] for f in frames]
    assert kinds[-1] == "agent_completed", kinds
    assert kinds.count("agent_started") == 1 and kinds.count("tool_executing") == 1, kinds
    redo = {"type": "agent_text_discarded", "payload": {"round": 2, "reason": "redo"}}
    assert any(f["type"] == redo["type"] and f["payload"] == redo["payload"] for f in after), kinds
    result = frames[-1]["payload"]["result"]["text"]
    assert result == "It is noon."
    assert kept_text(frames) == result
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1, seqs
    assert len(model.bodies) == 3, "round 1 once, round 2 twice"
    assert model.bodies[1]["messages"] == model.bodies[2]["messages"]
    assert model.bodies[1]["messages"][-1]["role"] == "tool"
