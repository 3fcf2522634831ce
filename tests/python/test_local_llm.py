"""The `llm` agent on the real model through `wsexec-local serve`, driven by the Python
`websockets` client: llama.cpp's server with SmolLM2-135M (`$WSEXEC_LLM_URL`, or started by the
`llm_url` fixture) behind `llm_proxy.Proxy`, which records what wsexec sends the model and passes
the answer on at a slow link's pace.
"""

import asyncio
import json

import pytest
import websockets

import chat_page
from llm_proxy import Proxy

# The real model on two shared cores: a first prompt evaluation, then the answer.
WAIT = chat_page.LLM_WAIT


def llm_env(proxy, max_tokens, **extra):
    """`serve`'s environment for the llm agent on `proxy`: deterministic, no tools."""
    env = {
        "LLM_PROVIDER": "openai",
        "LLM_MODEL": "smollm2",
        "LLM_BASE_URL": proxy.url,
        "LLM_TOOLS": "none",
        "LLM_MAX_TOKENS": str(max_tokens),
        "LLM_TEMPERATURE": "0",
        # Heartbeats every 200 ms: a cancel or a new follower is met that soon.
        "HEARTBEAT_DEADLINE_MS": "600",
    }
    env.update(extra)
    return env


@pytest.fixture
def proxy(llm_url):
    p = Proxy(llm_url)
    yield p
    p.stop()


def serve(tmp_path, proxy, max_tokens):
    return chat_page.Server(tmp_path, env=llm_env(proxy, max_tokens))


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def until(ws, kinds):
    """Frames up to and including the first whose type is in `kinds`."""
    frames = []
    while not frames or frames[-1]["type"] not in kinds:
        frames.append(await recv_json(ws))
    return frames


def ask(request_id, thread_id, text):
    return json.dumps({"type": "start_agent", "request_id": request_id, "thread_id": thread_id,
                       "payload": {"user_request": text}})


def streamed(frames):
    return "".join(f["payload"]["text"] for f in frames if f["type"] == "agent_delta")


async def two_turns(url, proxy):
    first, second = "Name three colors of the rainbow.", "Now name one more."
    async with websockets.connect(f"{url}/?user_id=alice-01") as ws:
        await ws.send(ask("r-1", "t-colors", first))
        events = await until(ws, {"agent_completed", "agent_error"})
        kinds = [e["type"] for e in events]
        assert kinds[0] == "agent_started" and kinds[-1] == "agent_completed", kinds
        assert kinds.count("agent_delta") >= 3, kinds
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        answer = events[-1]["payload"]["result"]["text"]
        assert answer.strip() and streamed(events) == answer

        await ws.send(ask("r-2", "t-colors", second))
        assert (await until(ws, {"agent_completed", "agent_error"}))[-1]["type"] == "agent_completed"
    sent = [(m["role"], m["content"]) for m in proxy.bodies[1]["messages"]]
    assert sent == [("user", first), ("assistant", answer), ("user", second)]
    assert len(proxy.bodies[0]["messages"]) == 1


def test_a_streamed_answer_then_a_second_turn_that_carries_the_first(tmp_path, proxy):
    """On the real model through serve: several `agent_delta` frames join to the completed
    text, and a second message in the same thread sends the model the first turn before it."""
    server = serve(tmp_path, proxy, 48)
    try:
        asyncio.run(two_turns(f"ws://{server.addr}", proxy))
    finally:
        server.stop()


async def cancel_mid_stream(url, proxy):
    async with websockets.connect(f"{url}/?user_id=alice-01") as owner, \
            websockets.connect(f"{url}/?user_id=alice-01") as other:
        await owner.send(ask("r-story", "t-story", "Write a long story about a dragon."))
        before = await until(owner, {"agent_delta", "agent_completed", "agent_error"})
        assert before[-1]["type"] == "agent_delta", before
        run_id = before[0]["run_id"]
        await other.send(json.dumps({"type": "cancel_agent", "run_id": run_id}))
        assert (await recv_json(other))["type"] == "agent_cancelled"
        after = await until(owner, {"agent_cancelled", "agent_completed", "agent_error"})
        assert after[-1]["type"] == "agent_cancelled", [f["type"] for f in after]
        # Nothing follows the cancel, not even a delta that was in flight.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(owner.recv(), 0.5)
        await other.send(json.dumps({"type": "get_execution", "run_id": run_id}))
        assert (await recv_json(other))["payload"]["state"] == "cancelled"
    assert proxy.wait_closed(1, 3) == [False], "the model's stream was not closed mid-answer"


def test_cancel_mid_stream_closes_the_model_stream_and_ends_the_deltas(tmp_path, proxy):
    """On the real model through serve: `cancel_agent` from a second socket mid-stream ends the
    run `cancelled`, closes the model's connection before its answer ended, and no
    `agent_delta` reaches the owner after `agent_cancelled`."""
    server = serve(tmp_path, proxy, 400)
    try:
        asyncio.run(cancel_mid_stream(f"ws://{server.addr}", proxy))
    finally:
        server.stop()


async def resume_mid_stream(url):
    async with websockets.connect(f"{url}/?user_id=alice-01") as first:
        await first.send(ask("r-long", "t-long", "Write a short story about a fox."))
        seen = await until(first, {"agent_delta", "agent_completed", "agent_error"})
        seen += await until(first, {"agent_delta", "agent_completed", "agent_error"})
        assert [f["type"] for f in seen].count("agent_delta") == 2, seen
    # The socket is closed mid-run; the same user comes back on a new one.
    last = seen[-1]["seq"]
    run_id = seen[0]["run_id"]
    async with websockets.connect(f"{url}/?user_id=alice-01") as again:
        await again.send(json.dumps({"type": "resume", "run_id": run_id, "after_seq": last}))
        reply = await recv_json(again)
        assert reply["type"] == "execution", reply
        rest = await until(again, {"agent_completed", "agent_error"})
        assert rest[-1]["type"] == "agent_completed", [f["type"] for f in rest]
        assert [f["seq"] for f in rest] == list(range(last + 1, last + 1 + len(rest)))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(again.recv(), 0.5)
        text = streamed(seen) + streamed(rest)
        assert text == rest[-1]["payload"]["result"]["text"]
        await again.send(json.dumps({"type": "get_execution", "run_id": run_id}))
        stored = (await recv_json(again))["payload"]
        assert stored["state"] == "completed"
        assert stored["result"]["text"] == text
        return [f["type"] for f in rest].count("agent_delta")


def test_a_dropped_socket_resumes_the_llm_run_and_misses_nothing(tmp_path, proxy):
    """On the real model through serve (issue 14): a client whose socket closed after two
    deltas resumes on a new socket with the last `seq` it saw, gets every later event once,
    ending `agent_completed`, and the text it assembled is the stored result."""
    server = serve(tmp_path, proxy, 120)
    try:
        later = asyncio.run(resume_mid_stream(f"ws://{server.addr}"))
        assert later >= 1, "the run ended before the client came back"
    finally:
        server.stop()
