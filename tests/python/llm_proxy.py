"""A loopback proxy in front of the model server for the Python suites: it records each request
body, passes the answer on at a slow link's pace (so a stream lasts long enough to cancel or to
drop a socket in), and records how each connection ended. The Rust suites' twin is
`tests/support/llm_server.rs`.

It runs its own event loop in a thread, so a test can hand its URL to `wsexec-local serve`
before driving clients in `asyncio.run`.
"""

import asyncio
import json
import threading
import time

# The end of a chunked body: the last data chunk's CRLF, then the zero-size chunk.
LAST_CHUNK = b"\r\n0\r\n\r\n"
# The Chat Completions stream's last event.
DONE = b"data: [DONE]"


class Proxy:
    """Forwards to `upstream` (a `/v1` URL), passing at most `pace_bytes` per `pace_secs` back
    (by default about one of llama.cpp's ~240-byte events per 40 ms: a slow hosted model)."""

    def __init__(self, upstream, pace_bytes=256, pace_secs=0.04):
        host_port = upstream.removeprefix("http://").split("/")[0]
        self.upstream_host, port = host_port.split(":")
        self.upstream_port = int(port)
        self.pace_bytes, self.pace_secs = pace_bytes, pace_secs
        self.bodies = []
        # One entry per connection its client closed: whether the answer had been passed on to
        # its end (`data: [DONE]`) by then.
        self.closed = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        assert started.wait(10), "the proxy did not start"
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _run(self, started):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        started.set()
        self.loop.run_forever()

    def stop(self):
        """Closes the listener and every proxied connection, then ends the loop's thread."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _shutdown(self):
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def wait_closed(self, count, timeout):
        """Waits (bounded) until `count` connections were closed by their client; their ends."""
        deadline = time.monotonic() + timeout
        while len(self.closed) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.closed)

    async def _serve(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = await reader.readexactly(length)
        self.bodies.append(json.loads(body) if body else None)
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        up_writer.write(head + body)
        await up_writer.drain()
        client_gone = asyncio.ensure_future(reader.read(64))
        # The model's last event passed on (a client may close right after it), and the end of the
        # chunked body read (the model's server may keep its side open for the next request).
        complete, ended, window = False, False, b""
        try:
            while not ended:
                chunk = asyncio.ensure_future(up_reader.read(self.pace_bytes))
                done, _ = await asyncio.wait({chunk, client_gone}, return_when=asyncio.FIRST_COMPLETED)
                if client_gone in done:
                    chunk.cancel()
                    break
                data = chunk.result()
                if not data:
                    complete = True
                    break
                writer.write(data)
                await writer.drain()
                window += data
                ended = window.endswith(LAST_CHUNK)
                complete = complete or ended or DONE in window
                window = window[-len(DONE):]
                await asyncio.sleep(self.pace_secs)
            await client_gone
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.append(complete)
            up_writer.close()
            writer.close()
