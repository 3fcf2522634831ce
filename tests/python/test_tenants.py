"""Tenants kept apart through `wsexec-local serve` (embedded store) with real WebSocket clients
and JWTs carrying a tenant claim: `carol` of one tenant never sees `carol` of another."""

import asyncio
import base64
import hashlib
import hmac
import json
import time

import websockets

SECRET = "tenant-test-secret"
WAIT = 15


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims):
    """An HS256 token of `claims` signed with SECRET."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def carol(tenant_claim=None):
    claims = {"sub": "carol", "exp": int(time.time()) + 600}
    if tenant_claim:
        claims.update(tenant_claim)
    return jwt(claims)


async def recv_until(ws, kind):
    """Frames up to and including the first of type `kind`."""
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        frames.append(frame)
        if frame["type"] == kind:
            return frames


async def ask(ws, frame):
    await ws.send(json.dumps(frame))
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def kept_apart(url):
    acme_url = f"{url}/?token={carol({'tenant': 'acme'})}"
    async with websockets.connect(acme_url) as acme:
        start = {"type": "start_agent", "request_id": "same", "payload": {"user_request": "acme only", "delay_ms": 3000}}
        await acme.send(json.dumps(start))
        started = await recv_until(acme, "agent_started")
        run_id = started[-1]["run_id"]
        # The JWT travels as a subprotocol here, the other way a browser sends it.
        globex_token = carol({"tenant_id": "globex"})
        async with websockets.connect(url, subprotocols=[f"jwt.{globex_token}"]) as globex:
            for kind in ("get_execution", "resume", "cancel_agent"):
                reply = await ask(globex, {"type": kind, "run_id": run_id})
                assert reply["type"] == "error" and reply["payload"]["code"] == "not_found", (kind, reply)
            listed = await ask(globex, {"type": "list_executions"})
            assert listed["payload"]["items"] == []
            # The same request id is globex's own run, not a replay of acme's.
            await globex.send(json.dumps(dict(start, payload={"user_request": "globex's own"})))
            own = await recv_until(globex, "agent_completed")
            assert all(f["run_id"] != run_id for f in own)
            assert "acme only" not in json.dumps(own)
        rest = await recv_until(acme, "agent_completed")
        assert rest[-1]["run_id"] == run_id
        assert (await ask(acme, {"type": "get_execution", "run_id": run_id}))["payload"]["state"] == "completed"


def test_tenants_share_nothing(tmp_path):
    """`carol` of `globex` gets `not_found` for `carol` of `acme`'s run on get, resume and cancel,
    lists none of it, and her own run with the same request id; acme's run completes untouched."""
    import chat_page

    server = chat_page.Server(tmp_path, env={"JWT_SECRET": SECRET})
    try:
        asyncio.run(kept_apart(server.url))
    finally:
        assert server.stop() == 0
