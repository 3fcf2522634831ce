"""A loopback Chat Completions endpoint for the Python suites that answers each request with a
scripted event stream (text chunks, tool-call fragments and pauses), so a test can make the model
do what a small real model will not do on cue: write a preamble and then call a tool. It records
each request body and when each chunk went out. The Rust suites' twin is `tests/support/sse.rs`.

It runs its own event loop in a thread (`loopback.LoopbackServer`), so a test can hand its URL to
`wsexec-local serve` before driving clients in `asyncio.run`.
"""

import asyncio
import json
import time

from loopback import LoopbackServer


def text(content):
    """A chunk carrying answer text."""
    return {"model": "scripted-model", "choices": [{"index": 0, "delta": {"content": content}}]}


def tool_call(call_id, name, arguments):
    """A chunk carrying one whole tool call."""
    call = {"index": 0, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}
    return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}


def finish(reason):
    """The chunk that ends a choice."""
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def kept_text(frames):
    """The text a client keeps: every `agent_delta`, less the rounds discarded so far."""
    kept = []
    for f in frames:
        if f["type"] == "agent_delta":
            kept.append((f["payload"]["round"], f["payload"]["text"]))
        elif f["type"] == "agent_text_discarded":
            kept = [(r, t) for r, t in kept if r != f["payload"]["round"]]
    return "".join(t for _, t in kept)


def usage(prompt_tokens, completion_tokens):
    """The usage-only chunk (`choices: []`) that `stream_options.include_usage` asks for."""
    return {"choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


class ScriptedModel(LoopbackServer):
    """Answers the n-th request with `scripts[n]`: a list of chunks (dicts, sent as `data:`
    events) and pauses (numbers of seconds), then `data: [DONE]`."""

    def __init__(self, scripts):
        self.scripts = list(scripts)
        # (time.monotonic(), chunk) of every chunk sent, in order.
        self.sent = []
        # Requests received, answered or not.
        self.requests = 0
        super().__init__("scripted model")

    async def _serve(self, reader, writer):
        try:
            await self.read_request(reader)
            self.requests += 1
            script = self.scripts.pop(0) if self.scripts else None
            if script is None:
                writer.write(b"HTTP/1.1 500 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
            for step in script + ["[DONE]"]:
                if isinstance(step, (int, float)):
                    await asyncio.sleep(step)
                    continue
                data = step if isinstance(step, str) else json.dumps(step)
                event = f"data: {data}\n\n".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                self.sent.append((time.monotonic(), step))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
