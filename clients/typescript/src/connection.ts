/**
 * One logical connection to a wsexec WebSocket API over a succession of sockets: the token as
 * the `jwt.<token>` subprotocol, and after a drop a new socket with jittered exponential
 * backoff until `close()`.
 */

import { WsexecError } from "./errors.js";
import { BACKOFF_FIRST_MS, BACKOFF_MAX_MS } from "./limits.js";

/** What a socket must offer: the browser's and Node's `WebSocket`, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** A `WebSocket` constructor. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The connection's state, as `on("state")` reports it. */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

/** The readyState of an open socket (the same in every implementation). */
const OPEN = 1;

/** Close code of a socket the client drops on purpose to reconnect (4000–4999: private use). */
const DROP_CODE = 4000;

/** Where and as whom to connect. */
export interface ConnectOptions {
  /** `wss://…` (API Gateway's stage URL) or `ws://127.0.0.1:3001` (`wsexec-local serve`). */
  url: string;
  /** A JWT, sent as the `jwt.<token>` subprotocol; a function is asked again on every reconnect,
   * so an expired token can be replaced. */
  token?: string | (() => string | Promise<string>);
  /** A user id for `wsexec-local serve --dev-auth` (`?user_id=`); never for a deployment. */
  devUser?: string;
  /** The `WebSocket` constructor; default: the global one (Node 20: `--experimental-websocket`). */
  WebSocket?: WebSocketConstructor;
  /** First and longest reconnect wait, ms (defaults: 250 and 5000). */
  backoff?: { firstMs?: number; maxMs?: number };
  /** Reply timeout of a request, ms (default 30000). */
  requestTimeoutMs?: number;
}

/** What the connection tells its owner. */
export interface ConnectionEvents {
  state(state: ConnectionState, detail: { attempt: number; code?: number; delayMs?: number }): void;
  open(reconnected: boolean): void;
  message(text: string): void;
}

/** The socket's text, whatever form the implementation hands it in. */
function frameText(data: unknown): string | undefined {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return undefined;
}

/** A socket that reopens itself after a drop. */
export class Connection {
  private socket: WebSocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private everOpened = false;
  private closed = false;
  private current: ConnectionState = "connecting";
  private readonly Ctor: WebSocketConstructor;
  private firstOpen: { resolve: () => void; reject: (e: WsexecError) => void } | null = null;

  constructor(
    private readonly options: ConnectOptions,
    private readonly events: ConnectionEvents,
  ) {
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      throw new WsexecError(
        "connect_failed",
        "no WebSocket: pass one as `WebSocket` (Node 20 has it behind --experimental-websocket)",
        false,
        true,
      );
    }
    this.Ctor = Ctor;
  }

  /** Opens the first socket; resolves once it is open, rejects if it closes before. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.firstOpen = { resolve, reject };
      void this.open();
    });
  }

  /** The connection's state. */
  get state(): ConnectionState {
    return this.current;
  }

  /** Whether a frame sent now goes out. */
  get isOpen(): boolean {
    return this.socket !== null && this.socket.readyState === OPEN;
  }

  /** Sends `text` on the open socket; false when there is none (the caller re-sends on open). */
  send(text: string): boolean {
    if (!this.isOpen || !this.socket) return false;
    this.socket.send(text);
    return true;
  }

  /** Closes the socket as a network drop would, so the connection opens a new one. */
  drop(): void {
    if (this.socket) this.socket.close(DROP_CODE, "reconnect");
  }

  /** Closes for good. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    if (s) s.close(1000, "closed by the client");
    this.setState("closed", {});
    this.firstOpen?.reject(new WsexecError("closed", "the client was closed"));
    this.firstOpen = null;
  }

  private setState(state: ConnectionState, detail: { code?: number; delayMs?: number }): void {
    this.current = state;
    this.events.state(state, { attempt: this.attempt, ...detail });
  }

  private async url(): Promise<{ url: string; protocols: string[] }> {
    const { token, devUser } = this.options;
    let url = this.options.url;
    if (devUser !== undefined) {
      const u = new URL(url);
      u.searchParams.set("user_id", devUser);
      url = u.toString();
    }
    const t = typeof token === "function" ? await token() : token;
    return { url, protocols: t ? [`jwt.${t}`] : [] };
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    this.setState(this.everOpened ? "reconnecting" : "connecting", {});
    let socket: WebSocketLike;
    try {
      const { url, protocols } = await this.url();
      if (this.closed) return;
      socket = protocols.length ? new this.Ctor(url, protocols) : new this.Ctor(url);
    } catch (e) {
      this.failed(undefined, e instanceof Error ? e.message : String(e));
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      opened = true;
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.setState("connected", {});
      this.firstOpen?.resolve();
      this.firstOpen = null;
      this.events.open(reconnected);
    };
    socket.onmessage = (ev) => {
      if (this.socket !== socket) return;
      const text = frameText(ev.data);
      if (text !== undefined) this.events.message(text);
    };
    // A socket that fails before it opens is done: Node 20's `WebSocket` reports a refused
    // upgrade (401, 403) with `error` alone, never `close`. Once open, `close` follows.
    socket.onerror = () => {
      if (opened || this.socket !== socket) return;
      this.socket = null;
      try {
        socket.close();
      } catch {
        // Still connecting: some implementations refuse to close then; it is dropped anyway.
      }
      this.failed(1006, "the connection failed");
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.failed(ev.code, ev.reason);
    };
  }

  /** A socket closed or could not be made: the first one fails `start`, later ones retry. */
  private failed(code: number | undefined, reason: string | undefined): void {
    if (this.closed) return;
    if (!this.everOpened) {
      this.closed = true;
      this.setState("closed", { code });
      const why = reason ? `: ${reason}` : "";
      this.firstOpen?.reject(
        new WsexecError(
          "connect_failed",
          `the connection was refused or failed (close code ${code ?? "none"})${why}`,
        ),
      );
      this.firstOpen = null;
      return;
    }
    const first = this.options.backoff?.firstMs ?? BACKOFF_FIRST_MS;
    const max = this.options.backoff?.maxMs ?? BACKOFF_MAX_MS;
    // ±25% jitter, so the tabs of a server that restarted do not all come back at once.
    const delayMs = Math.round(Math.min(max, first * 2 ** this.attempt) * (0.75 + Math.random() / 2));
    this.attempt += 1;
    this.setState("reconnecting", { code, delayMs });
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.open();
    }, delayMs);
  }
}
