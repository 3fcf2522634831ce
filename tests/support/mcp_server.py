"""A real MCP server (the official Python SDK, `mcp` 2.x from PyPI) for wsexec's tests.

Serves Streamable HTTP at /mcp on 127.0.0.1 and prints its port on stdout. A thin ASGI layer in
front of the SDK's app records every request (method, tool, arguments, headers) for the tests to
read at GET /calls, answers GET /plain at once (the plain HTTP round trip the benchmark compares
with), and injects wire faults into `tools/call` on demand (POST /control {"fault", "count"}):
`500` (an HTTP 500 with a body), `garbage` (200 with a body that is not JSON-RPC), `expire` (the
SDK's own 404 for an unknown session). Everything else is the SDK's real server.

Usage: python mcp_server.py [--port N]
"""

import argparse
import json
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel

mcp = MCPServer("wsexec-test-tools")

# A tiny PNG (1x1): the call result carries it as an image part, which wsexec must leave out.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class Order(BaseModel):
    order_id: str
    status: str
    total: float


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def lookup_order(order_id: str) -> Order:
    """Looks up an order by its id and returns its status and total."""
    return Order(order_id=order_id, status="shipped", total=42.5)


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
async def sleep(seconds: float) -> str:
    """Waits the given number of seconds, then says so."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@mcp.tool()
def place_order(item: str) -> str:
    """Places an order for an item (not idempotent: each call orders again)."""
    return f"ordered {item}"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def broken() -> str:
    """Always fails."""
    raise ToolError("the warehouse database is offline")


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def picture() -> list:
    """Returns a caption and a picture."""
    return ["a one-pixel picture", Image(data=PNG, format="png")]


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def huge() -> str:
    """Returns a very long text."""
    return "0123456789" * 10_000


class Wire:
    """Records requests, serves /calls, /plain and /control, injects faults into tools/call."""

    def __init__(self, app):
        self.app = app
        self.calls = []
        self.fault = None
        self.count = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/plain":
            return await reply(send, 200, b'{"ok":true}')
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if path == "/calls":
            return await reply(send, 200, json.dumps(self.calls).encode())
        if path == "/control":
            ask = json.loads(body or b"{}")
            self.fault = ask.get("fault")
            self.count = int(ask.get("count", 1))
            return await reply(send, 200, b"{}")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            msg = json.loads(body) if body else None
        except ValueError:
            msg = None
        entry = {"http": scope["method"], "headers": headers}
        if isinstance(msg, dict):
            entry["method"] = msg.get("method")
            if msg.get("method") == "tools/call":
                entry["tool"] = msg["params"]["name"]
                entry["arguments"] = msg["params"].get("arguments")
        self.calls.append(entry)
        if entry.get("method") == "tools/call" and self.fault and self.count > 0:
            self.count -= 1
            if self.fault == "500":
                return await reply(send, 500, b"Internal Server Error", "text/plain")
            if self.fault == "garbage":
                return await reply(send, 200, b"{this is not json-rpc", "application/json")
            if self.fault == "expire":
                err = {"jsonrpc": "2.0", "id": "server-error",
                       "error": {"code": -32600, "message": "Session not found"}}
                return await reply(send, 404, json.dumps(err).encode())
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def reply(send, status, body, content_type="application/json"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it (Linux). Without it, uvicorn's two writes per response
    # (head, then body) meet the client's delayed ACK on a kept-alive connection: ~40 ms a call.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", args.port))
    print(sock.getsockname()[1], flush=True)
    app = Wire(mcp.streamable_http_app())
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(config).serve, [sock])


if __name__ == "__main__":
    sys.exit(main())
