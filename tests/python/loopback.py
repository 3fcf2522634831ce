"""A loopback HTTP/1.1 server for the Python suites' model stand-ins (`llm_proxy.Proxy`,
`scripted_model.ScriptedModel`): an asyncio server on a free 127.0.0.1 port whose event loop
runs in a thread of its own, so a test can hand its URL to `wsexec-local serve` before driving
clients in `asyncio.run`. Subclasses answer each connection in `_serve`.
"""

import asyncio
import json
import threading


class LoopbackServer:
    """Serves on `self.url` (a `/v1` base URL); `self.bodies` holds each request's JSON body."""

    def __init__(self, name):
        self.bodies = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        assert started.wait(10), f"the {name} did not start"
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _run(self, started):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        started.set()
        self.loop.run_forever()

    def stop(self):
        """Closes the listener and every open connection, then ends the loop's thread."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _shutdown(self):
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def read_request(self, reader):
        """Reads one request; records its body (JSON) and returns the raw head and body."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = await reader.readexactly(length)
        self.bodies.append(json.loads(body) if body else None)
        return head, body

    async def _serve(self, reader, writer):
        raise NotImplementedError
