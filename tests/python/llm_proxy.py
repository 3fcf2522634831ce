"""A loopback proxy in front of the model server for the Python suites: it records each request
body, passes the answer on at a slow link's pace (so a stream lasts long enough to cancel or to
drop a socket in), and records how each connection ended. The Rust suites' twin is
`tests/support/llm_server.rs`.

It runs its own event loop in a thread (`loopback.LoopbackServer`), so a test can hand its URL to
`wsexec-local serve` before driving clients in `asyncio.run`.
"""

import asyncio
import time

from loopback import LoopbackServer

# The end of a chunked body: the last data chunk's CRLF, then the zero-size chunk.
LAST_CHUNK = b"\r\n0\r\n\r\n"
# The Chat Completions stream's last event.
DONE = b"data: [DONE]"


class Proxy(LoopbackServer):
    """Forwards to `upstream` (a `/v1` URL), passing at most `pace_bytes` per `pace_secs` back
    (by default about one of llama.cpp's ~240-byte events per 40 ms: a slow hosted model)."""

    def __init__(self, upstream, pace_bytes=256, pace_secs=0.04):
        host_port = upstream.removeprefix("http://").split("/")[0]
        self.upstream_host, port = host_port.split(":")
        self.upstream_port = int(port)
        self.pace_bytes, self.pace_secs = pace_bytes, pace_secs
        # One entry per connection its client closed: whether the answer had been passed on to
        # its end (`data: [DONE]`) by then.
        self.closed = []
        super().__init__("proxy")

    def wait_closed(self, count, timeout):
        """Waits (bounded) until `count` connections were closed by their client; their ends."""
        deadline = time.monotonic() + timeout
        while len(self.closed) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.closed)

    async def _serve(self, reader, writer):
        head, body = await self.read_request(reader)
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        up_writer.write(head + body)
        await up_writer.drain()
        client_gone = asyncio.ensure_future(reader.read(64))
        # The model's last event passed on (a client may close right after it), and the end of the
        # chunked body read (the model's server may keep its side open for the next request).
        complete, ended, window = False, False, b""
        head, marked = b"", False
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
                if not marked:
                    # One request per connection: the response says so (`connection: close`), so
                    # a client does not keep the connection for its next request.
                    head += data
                    if b"\r\n" not in head:
                        continue
                    data = head.replace(b"\r\n", b"\r\nconnection: close\r\n", 1)
                    marked = True
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
