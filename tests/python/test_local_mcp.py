"""An MCP server's tools through `wsexec-local serve`, driven by the Python `websockets` client:
the official Python SDK's server (`tests/support/mcp_server.py`) named in `MCP_SERVERS`, a
scripted model asking for its tool. Checks what the model was offered and got back, what the MCP
server received, the events the client saw, the session ended when serve stops, and the log.
"""

import asyncio
import json

import pytest

from chat_page import Server
from mcp_support import API_KEY, API_KEY_HEADER, McpServer, one_run
from scripted_model import ScriptedModel, finish, text, tool_call

ORDER = {"order_id": "A-17", "status": "shipped", "total": 42.5}


@pytest.fixture
def mcp_server():
    server = McpServer()
    yield server
    server.stop()


def test_an_mcp_tool_is_offered_called_and_answered_through_serve(tmp_path, mcp_server):
    """Through serve with a websockets client: the model is offered `orders__lookup_order` with
    the server's description and schema, the server receives the model's arguments with the
    configured header, the model gets the structured result back, the client sees
    `tool_executing`/`tool_completed` under the offered name, stopping serve ends the session
    with `DELETE`, and no log line (at `info`) carries the header value."""
    model = ScriptedModel([
        [tool_call("c1", "orders__lookup_order", json.dumps({"order_id": "A-17"})),
         finish("tool_calls")],
        [text("Order A-17 "), text("has shipped."), finish("stop")],
    ])
    env = {"LLM_PROVIDER": "openai", "LLM_MODEL": "scripted-model", "LLM_BASE_URL": model.url,
           "MCP_SERVERS": json.dumps([mcp_server.entry("orders")])}
    server = Server(tmp_path, env=env, rust_log="info")
    try:
        frames = asyncio.run(one_run(server.url, "mia-01", "Where is order A-17?"))
    finally:
        assert server.stop() == 0
        model.stop()
    kinds = [f["type"] for f in frames]
    assert kinds[-1] == "agent_completed", frames
    assert frames[-1]["payload"]["result"]["text"] == "Order A-17 has shipped."
    executing = [f["payload"] for f in frames if f["type"] == "tool_executing"]
    assert executing == [{"tool_name": "orders__lookup_order", "parameters": {"order_id": "A-17"},
                          "call_id": "c1"}]
    completed = [f["payload"] for f in frames if f["type"] == "tool_completed"]
    assert [c["tool_name"] for c in completed] == ["orders__lookup_order"]
    assert completed[0]["result"]["structured_content"] == ORDER

    first, second = model.bodies
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert "current_time" in offered, offered.keys()
    tool = offered["orders__lookup_order"]
    assert tool["description"] == "Looks up an order by its id and returns its status and total."
    assert tool["parameters"]["properties"]["order_id"]["type"] == "string"
    assert tool["parameters"]["required"] == ["order_id"]
    results = [m for m in second["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["c1"]
    assert json.loads(results[0]["content"])["structured_content"] == ORDER

    calls = mcp_server.calls()
    tool_calls = [c for c in calls if c.get("method") == "tools/call"]
    assert [(c["tool"], c["arguments"]) for c in tool_calls] == [("lookup_order", {"order_id": "A-17"})]
    assert tool_calls[0]["headers"][API_KEY_HEADER.lower()] == API_KEY
    session = tool_calls[0]["headers"]["mcp-session-id"]
    deletes = [c for c in calls if c["http"] == "DELETE"]
    assert [d["headers"].get("mcp-session-id") for d in deletes] == [session]

    log = server.log_path.read_text()
    assert "mcp tools discovered" in log, log
    assert API_KEY not in log
