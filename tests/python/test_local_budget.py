"""Usage limits through `wsexec-local serve` (embedded store) with the websockets client and a
scripted model that reports each round's usage: a daily token budget lets runs start until the
day's tokens reach it, then refuses starts `quota_exceeded` without a model request; one tenant's
spend never blocks another tenant; `get_usage` shows the caller's own counters and limits."""

import asyncio
import base64
import hashlib
import hmac
import json
import time

import websockets

from chat_page import Server
from scripted_model import ScriptedModel, finish, text, usage

SECRET = "budget-test-secret"
WAIT = 15


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user, tenant):
    """An HS256 JWT for `user` of `tenant`."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "tenant": tenant, "exp": int(time.time()) + 600}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def answer(prompt_tokens, completion_tokens):
    return [text("fine"), finish("stop"), usage(prompt_tokens, completion_tokens)]


async def start(ws, request_id):
    """Starts a run; its last frame (`agent_completed`, or the refusal)."""
    await ws.send(json.dumps({"type": "start_agent", "request_id": request_id,
                              "payload": {"user_request": "hi"}}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if frame["type"] in ("agent_completed", "agent_error"):
            return frame


async def get_usage(ws):
    await ws.send(json.dumps({"type": "get_usage"}))
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def spend(url, model):
    async with websockets.connect(f"{url}/?token={token('dana', 'acme')}") as dana, \
            websockets.connect(f"{url}/?token={token('erin', 'acme')}") as erin, \
            websockets.connect(f"{url}/?token={token('dana', 'globex')}") as globex:
        for i in range(3):
            done = await start(dana, f"d-{i}")
            assert done["type"] == "agent_completed", done
        assert model.requests == 3
        for ws, rid in ((dana, "d-3"), (erin, "e-0")):
            refused = await start(ws, rid)
            p = refused["payload"]
            assert refused["type"] == "agent_error" and p["code"] == "quota_exceeded", refused
            assert p["limit"] in ("DAILY_TOKEN_BUDGET_PER_USER", "DAILY_TOKEN_BUDGET_PER_TENANT")
            assert p["retryable"] is True and 0 < p["retry_after_ms"] <= 86_400_000
            assert "run_id" not in refused
        assert model.requests == 3, "a refused start asked the model nothing"
        assert (await start(globex, "g-0"))["type"] == "agent_completed"
        assert model.requests == 4

        mine = (await get_usage(dana))["payload"]
        assert mine["metered"] is True
        assert mine["usage"] == {"runs": 3, "input_tokens": 450, "output_tokens": 150, "tokens": 600}
        assert mine["limits"]["DAILY_TOKEN_BUDGET_PER_USER"] == {"limit": 500, "used": 600, "remaining": 0}
        assert mine["limits"]["DAILY_TOKEN_BUDGET_PER_TENANT"]["used"] == 600
        theirs = (await get_usage(erin))["payload"]
        assert theirs["usage"]["runs"] == 0, "erin sees her own counters, not dana's"


def test_budgets_refuse_without_a_model_request_and_tenants_are_kept_apart(tmp_path):
    """A 500-token budget per user and 1000 per tenant on the embedded store: dana's three
    200-token runs spend hers, then her start and her tenant-mate's are refused (no model
    request, no run); another tenant's `dana` still runs; `get_usage` shows dana's own sums."""
    model = ScriptedModel([answer(150, 50)] * 3 + [answer(10, 5)])
    env = {"JWT_SECRET": SECRET, "LLM_PROVIDER": "openai", "LLM_MODEL": "scripted-model",
           "LLM_BASE_URL": model.url, "LLM_TOOLS": "none",
           "DAILY_TOKEN_BUDGET_PER_USER": "500", "DAILY_TOKEN_BUDGET_PER_TENANT": "600"}
    server = Server(tmp_path, env=env)
    try:
        asyncio.run(spend(server.url, model))
    finally:
        assert server.stop() == 0
        model.stop()
