"""Tool approval for an MCP tool through `wsexec-local serve` on its embedded store, driven by the
Python `websockets` client: the real MCP server (`tests/support/mcp_server.py`) named in
`MCP_SERVERS` with `"require_approval": ["place_order"]`, a scripted model asking for
`orders__place_order`. The run stops at `tool_approval_required` before the MCP server hears of
the call; an answer from a new connection of the same user goes on with the run there: approved,
the MCP server gets the call once; denied, it gets nothing and the model is told the user
declined. The deny path runs with `RUN_DISPATCH=auto`.
"""

import asyncio
import json

import pytest
import websockets

from chat_page import WAIT, Server
from mcp_support import McpServer
from scripted_model import ScriptedModel, finish, text, tool_call

TERMINAL = ("agent_completed", "agent_error", "agent_cancelled", "agent_death")
ARGS = {"item": "tea"}


@pytest.fixture
def mcp_server():
    server = McpServer()
    yield server
    server.stop()


def scripted():
    """Round 1 asks to place an order; round 2 answers."""
    return ScriptedModel([
        [tool_call("c1", "orders__place_order", json.dumps(ARGS)), finish("tool_calls")],
        [text("Done: "), text("see above."), finish("stop")],
    ])


@pytest.fixture
def served(tmp_path, mcp_server):
    """`served(**env)`: a fresh scripted model and `wsexec-local serve` offering the MCP server's
    tools (`place_order` under approval), as `(server, model)`; both stopped after the test."""
    running = []

    def start(**env):
        model = scripted()
        running.append(model)
        server = serve(tmp_path, model, mcp_server, **env)
        running.append(server)
        return server, model

    yield start
    for process in reversed(running):
        process.stop()


def serve(tmp_path, model, mcp_server, **env):
    entry = {**mcp_server.entry("orders"), "require_approval": ["place_order"]}
    return Server(tmp_path, env={
        "LLM_PROVIDER": "openai", "LLM_MODEL": "scripted-model", "LLM_BASE_URL": model.url,
        "LLM_TOOLS": "none", "MCP_SERVERS": json.dumps([entry]), **env,
    })


def place_orders(mcp_server):
    """The `tools/call`s of `place_order` the MCP server received, as their arguments."""
    return [c["arguments"] for c in mcp_server.calls()
            if c.get("method") == "tools/call" and c.get("tool") == "place_order"]


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def until(ws, kinds):
    """Frames up to and including the first of type in `kinds`."""
    frames = []
    while not frames or frames[-1]["type"] not in kinds:
        frames.append(await recv(ws))
    return frames


async def ask(url, user):
    """Starts the run on a first connection; returns it, the frames up to the approval request,
    and that request."""
    ws = await websockets.connect(f"{url}/?user_id={user}")
    await ws.send(json.dumps({"type": "start_agent", "request_id": f"r-{user}",
                              "payload": {"user_request": "Order me some tea"}}))
    frames = await until(ws, ("tool_approval_required", *TERMINAL))
    assert frames[-1]["type"] == "tool_approval_required", frames
    return ws, frames, frames[-1]


async def answer(url, user, run_id, call_id, approved, reason=None):
    """Answers on a new connection of `user`: its reply, and the run's events it then receives
    up to the end (the new connection follows the run)."""
    async with websockets.connect(f"{url}/?user_id={user}") as ws:
        frame = {"type": "approve_tool", "request_id": "a-1", "run_id": run_id,
                 "call_id": call_id, "approved": approved}
        if reason is not None:
            frame["reason"] = reason
        await ws.send(json.dumps(frame))
        reply = await recv(ws)
        events = await until(ws, TERMINAL) if reply["type"] == "approval_accepted" else []
        return reply, events


def test_an_approved_mcp_call_runs_once_after_the_answer_from_a_new_connection(served, mcp_server):
    """The request names the tool and arguments and comes before any `tool_executing`; the run
    waits (`execution.awaiting` lists the call) and the MCP server has no `place_order` call;
    approving on a new connection replies `approval_accepted` (continued), that connection gets
    the tool's events and the answer, the MCP server got exactly one call with the arguments,
    and a second answer (from the first connection) is `already_answered`."""
    server, model = served()
    user = "rosa-01"

    async def scenario():
        first, frames, asked = await ask(server.url, user)
        p = asked["payload"]
        assert p["tool_name"] == "orders__place_order"
        assert p["parameters"] == ARGS
        assert isinstance(p["call_id"], str) and p["expires_at"].endswith("Z")
        assert isinstance(asked["seq"], int)
        assert not [f for f in frames if f["type"] == "tool_executing"], frames
        await asyncio.sleep(0.3)
        assert place_orders(mcp_server) == [], "the MCP server was called before the answer"
        assert model.requests == 1

        await first.send(json.dumps({"type": "get_execution", "request_id": "g-1",
                                     "run_id": asked["run_id"]}))
        snap = await until(first, ("execution", "error"))
        view = snap[-1]["payload"]
        assert view["state"] == "running", view
        assert view["awaiting"]["calls"] == [{"call_id": p["call_id"], "tool_name": p["tool_name"],
                                              "parameters": ARGS, "seq": asked["seq"]}]

        reply, events = await answer(server.url, user, asked["run_id"], p["call_id"], True)
        assert reply["type"] == "approval_accepted", reply
        assert reply["run_id"] == asked["run_id"] and "seq" not in reply
        assert reply["payload"] == {"call_id": p["call_id"], "approved": True, "continued": True}
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "agent_completed", events
        assert "tool_executing" in kinds and "tool_completed" in kinds, kinds
        done = [e["payload"] for e in events if e["type"] == "tool_completed"]
        assert done[0]["tool_name"] == "orders__place_order"
        assert "ordered tea" in json.dumps(done[0]["result"])
        assert events[-1]["payload"]["result"]["text"] == "Done: see above."
        seqs = [e["seq"] for e in events if "seq" in e]
        assert seqs == sorted(set(seqs)) and seqs[0] > asked["seq"], seqs

        await first.send(json.dumps({"type": "approve_tool", "request_id": "a-2",
                                     "run_id": asked["run_id"], "call_id": p["call_id"],
                                     "approved": True}))
        errors = await until(first, ("error",))
        assert errors[-1]["request_id"] == "a-2"
        assert errors[-1]["payload"]["code"] in ("already_answered", "run_finished"), errors[-1]
        await first.close()

    asyncio.run(scenario())
    assert place_orders(mcp_server) == [ARGS]
    told = [m for m in model.bodies[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in told] == ["c1"]
    assert "ordered tea" in told[0]["content"]


def test_a_second_answer_while_the_run_goes_on_is_already_answered(served, mcp_server):
    """Two answers to the same call race from two new connections: exactly one is accepted, the
    other is `already_answered`, and the MCP server is called once."""
    server, _ = served()
    user = "sami-01"

    async def scenario():
        first, _, asked = await ask(server.url, user)
        run_id, call_id = asked["run_id"], asked["payload"]["call_id"]
        results = await asyncio.gather(
            answer(server.url, user, run_id, call_id, True),
            answer(server.url, user, run_id, call_id, True),
        )
        kinds = sorted(r["type"] for r, _ in results)
        assert kinds == ["approval_accepted", "error"], results
        (err,) = [r for r, _ in results if r["type"] == "error"]
        assert err["payload"]["code"] == "already_answered" and err["request_id"] == "a-1", err
        (events,) = [e for r, e in results if r["type"] == "approval_accepted"]
        assert events[-1]["type"] == "agent_completed", events
        await first.close()

    asyncio.run(scenario())
    assert place_orders(mcp_server) == [ARGS]


def test_a_denied_mcp_call_sends_nothing_and_the_model_hears_it_with_auto_dispatch(served, mcp_server):
    """`RUN_DISPATCH=auto`: denying on a new connection (with a reason) replies
    `approval_accepted` (approved false, continued), no tool event follows, the run completes
    with the model's second answer, whose request carries the declined result with the reason
    for the call's id; the MCP server received no `tools/call` at all."""
    server, model = served(RUN_DISPATCH="auto")
    user = "tara-01"

    async def scenario():
        first, _, asked = await ask(server.url, user)
        p = asked["payload"]
        reply, events = await answer(server.url, user, asked["run_id"], p["call_id"], False,
                                     reason="too expensive")
        assert reply["type"] == "approval_accepted", reply
        assert reply["payload"] == {"call_id": p["call_id"], "approved": False, "continued": True}
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "agent_completed", events
        assert "tool_executing" not in kinds and "tool_completed" not in kinds, kinds
        assert events[-1]["payload"]["result"]["text"] == "Done: see above."
        await first.close()

    asyncio.run(scenario())
    assert [c for c in mcp_server.calls() if c.get("method") == "tools/call"] == []
    assert model.requests == 2
    told = [m for m in model.bodies[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in told] == ["c1"]
    assert "the user declined this call; their reason: too expensive" in told[0]["content"]


def test_a_resume_of_the_waiting_run_shows_and_re_pushes_the_request(served, mcp_server):
    """A new connection's `resume` (after_seq 0) gets the snapshot with `awaiting`, then the
    unanswered `tool_approval_required` again with its original `seq` and payload, once; answering
    on that connection completes the run there."""
    server, _ = served()
    user = "uma-01"

    async def scenario():
        first, _, asked = await ask(server.url, user)
        async with websockets.connect(f"{server.url}/?user_id={user}") as ws:
            await ws.send(json.dumps({"type": "resume", "request_id": "s-1",
                                      "run_id": asked["run_id"], "after_seq": 0}))
            # The pushed event and the direct reply: the push goes out during the invocation,
            # the reply at its end, so the event comes first here (clients keep either order).
            got = {f["type"]: f for f in [await recv(ws), await recv(ws)]}
            assert set(got) == {"execution", "tool_approval_required"}, got
            calls = got["execution"]["payload"]["awaiting"]["calls"]
            assert [(c["call_id"], c["seq"]) for c in calls] == [(asked["payload"]["call_id"], asked["seq"])]
            again = got["tool_approval_required"]
            assert again["seq"] == asked["seq"] and again["payload"] == asked["payload"]
            await ws.send(json.dumps({"type": "approve_tool", "request_id": "a-1",
                                      "run_id": asked["run_id"],
                                      "call_id": asked["payload"]["call_id"], "approved": True}))
            frames = await until(ws, TERMINAL)
            assert frames[-1]["type"] == "agent_completed", frames
            assert [f["type"] for f in frames].count("tool_approval_required") == 0, frames
            assert frames[0]["type"] == "approval_accepted", frames
        await first.close()

    asyncio.run(scenario())
    assert place_orders(mcp_server) == [ARGS]
