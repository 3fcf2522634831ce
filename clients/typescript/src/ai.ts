/**
 * `WsexecChatTransport`: the AI SDK's `ChatTransport` (v6) over a wsexec client. A chat is a
 * wsexec thread; `sendMessages` starts a run in it, `reconnectToStream` replays the thread's
 * alive run, an abort cancels the run, and approvals answer `tool_approval_required`.
 */

import type { ChatRequestOptions, ChatTransport, UIMessage, UIMessageChunk } from "ai";
import { ChunkMapper } from "./ai-chunks.js";
import type { WsexecClient } from "./client.js";
import { WsexecError } from "./errors.js";
import { isAlive } from "./protocol.js";
import type { Run } from "./run.js";

export { isDiscardedText, keptText, messageIdOf } from "./ai-chunks.js";

/** How the transport starts runs. */
export interface WsexecChatTransportOptions {
  /** A connected client (`connect()`), shared by every chat of the page. */
  client: WsexecClient;
  /** The agent each run uses (default: the server's). */
  agent?: string;
  /** Agent options for each run. */
  options?: Record<string, unknown>;
  /** The thread of a chat (default: the chat's id, which the server accepts as an id). */
  threadId?: (chatId: string) => string;
}

/** A run this transport streamed, and how far its streams got. */
interface Followed {
  run: Run;
  mapper: ChunkMapper;
  /** Events already sent on an earlier stream (one that stopped at approvals). */
  sent: number;
}

/** A tool part of a message, as far as the transport reads it. */
interface ToolPartLike {
  type: string;
  toolCallId?: string;
  state?: string;
  approval?: { id: string; approved?: boolean; reason?: string };
}

/** The text a user message carries: its text parts, joined. */
function userText(message: UIMessage | undefined): string {
  if (!message || message.role !== "user") return "";
  return message.parts
    .filter((p): p is { type: "text"; text: string } => p.type === "text")
    .map((p) => p.text)
    .join("");
}

/** The approvals the user answered in the last assistant message and the SDK now sends. */
function answeredApprovals(messages: UIMessage[]): { callId: string; approved: boolean; reason?: string }[] {
  const last = messages[messages.length - 1];
  if (!last || last.role !== "assistant") return [];
  const out: { callId: string; approved: boolean; reason?: string }[] = [];
  for (const p of last.parts as ToolPartLike[]) {
    if (p.state === "approval-responded" && p.toolCallId && p.approval && p.approval.approved !== undefined) {
      const answer: { callId: string; approved: boolean; reason?: string } = {
        callId: p.toolCallId,
        approved: p.approval.approved,
      };
      if (p.approval.reason !== undefined) answer.reason = p.approval.reason;
      out.push(answer);
    }
  }
  return out;
}

function abortError(): Error {
  const e = new Error("aborted");
  e.name = "AbortError";
  return e;
}

/** The AI SDK's `ChatTransport` over wsexec. */
export class WsexecChatTransport<UI_MESSAGE extends UIMessage = UIMessage> implements ChatTransport<UI_MESSAGE> {
  /** A reconnect replays the run from its first event: the SDK resets the message first. */
  readonly resumeStreamIsReplay = true;
  private readonly client: WsexecClient;
  private readonly chats = new Map<string, Followed>();

  constructor(private readonly settings: WsexecChatTransportOptions) {
    this.client = settings.client;
  }

  /** Starts a run with the last user message, or answers the approvals the user gave. */
  sendMessages = async (
    options: {
      trigger: "submit-message" | "regenerate-message";
      chatId: string;
      messageId: string | undefined;
      messages: UI_MESSAGE[];
      abortSignal: AbortSignal | undefined;
    } & ChatRequestOptions,
  ): Promise<ReadableStream<UIMessageChunk>> => {
    const { chatId, messages, abortSignal } = options;
    if (abortSignal?.aborted) throw abortError();
    const approvals = answeredApprovals(messages);
    if (approvals.length > 0) return this.answer(chatId, approvals, abortSignal);
    const text = userText(messages[messages.length - 1]);
    const start: Parameters<WsexecClient["start"]>[1] = { threadId: this.threadOf(chatId) };
    if (this.settings.agent !== undefined) start.agent = this.settings.agent;
    if (this.settings.options !== undefined) start.options = this.settings.options;
    const run = this.client.start(text, start);
    const followed = { run, mapper: null as unknown as ChunkMapper, sent: 0 };
    return this.stream(chatId, followed, abortSignal, true);
  };

  /** Replays the chat's alive run from its first event, or `null` when none is alive. */
  reconnectToStream = async (
    options: { chatId: string; abortSignal?: AbortSignal } & ChatRequestOptions,
  ): Promise<ReadableStream<UIMessageChunk> | null> => {
    const { chatId, abortSignal } = options;
    let followed = this.chats.get(chatId);
    if (!followed || followed.run.done) {
      const page = await this.client.list({ threadId: this.threadOf(chatId), limit: 1 });
      const newest = page.items[0];
      if (!newest || !isAlive(newest.state)) return null;
      const run = this.client.follow(newest.run_id);
      followed = { run, mapper: new ChunkMapper(newest.run_id), sent: 0 };
    } else {
      followed = { run: followed.run, mapper: new ChunkMapper(followed.run.runId ?? ""), sent: 0 };
    }
    return this.stream(chatId, followed, abortSignal, false);
  };

  private threadOf(chatId: string): string {
    return this.settings.threadId ? this.settings.threadId(chatId) : chatId;
  }

  /** Sends `approve_tool` for each answer and streams the rest of the run. */
  private async answer(
    chatId: string,
    approvals: { callId: string; approved: boolean; reason?: string }[],
    abortSignal: AbortSignal | undefined,
  ): Promise<ReadableStream<UIMessageChunk>> {
    let followed = this.chats.get(chatId);
    if (!followed || followed.run.done) {
      // After a reload: follow the thread's waiting run, replaying up to its approvals.
      const page = await this.client.list({ threadId: this.threadOf(chatId), limit: 1 });
      const newest = page.items[0];
      if (!newest || !isAlive(newest.state)) {
        throw new WsexecError("run_finished", "the run awaiting these approvals has ended");
      }
      const run = this.client.follow(newest.run_id);
      followed = { run, mapper: new ChunkMapper(newest.run_id), sent: 0 };
      const want = new Set(approvals.map((a) => a.callId));
      for await (const ev of run) {
        followed.mapper.map(ev);
        followed.sent += 1;
        if (ev.type === "tool_approval_required") want.delete(ev.payload.call_id);
        if (want.size === 0) break;
      }
    }
    const denied: UIMessageChunk[] = [];
    for (const a of approvals) {
      await followed.run.approve(a.callId, a.approved, a.reason);
      if (!a.approved) denied.push(followed.mapper.denied(a.callId));
    }
    return this.stream(chatId, followed, abortSignal, false, denied);
  }

  /** The run's events from `followed.sent` on, as chunks, until it ends or stops at approvals. */
  private stream(
    chatId: string,
    followed: Followed,
    abortSignal: AbortSignal | undefined,
    fresh: boolean,
    first: UIMessageChunk[] = [],
  ): ReadableStream<UIMessageChunk> {
    this.chats.set(chatId, followed);
    const { run } = followed;
    let stopped = false;
    const onAbort = () => {
      stopped = true;
      run.cancel().catch(() => {});
    };
    abortSignal?.addEventListener("abort", onAbort, { once: true });
    return new ReadableStream<UIMessageChunk>({
      start: async (controller) => {
        try {
          if (fresh) followed.mapper = new ChunkMapper(await run.id());
          followed.mapper.newStream();
          for (const c of followed.mapper.start()) controller.enqueue(c);
          for (const c of first) controller.enqueue(c);
          let index = 0;
          for await (const ev of run) {
            if (stopped) break;
            if (index++ < followed.sent) continue;
            followed.sent = index;
            for (const c of followed.mapper.map(ev)) controller.enqueue(c);
            if (ev.type === "tool_approval_required" && !this.moreApprovalsFollow(run, index)) {
              for (const c of followed.mapper.pause()) controller.enqueue(c);
              break;
            }
          }
          controller.close();
        } catch (e) {
          if (stopped) controller.close();
          else controller.error(e);
        } finally {
          abortSignal?.removeEventListener("abort", onAbort);
        }
      },
      cancel: () => {
        stopped = true;
      },
    });
  }

  /** Whether the events already received after `index` hold more approvals of the same round
   * (one event each): the stream pauses after the last of them. */
  private moreApprovalsFollow(run: Run, index: number): boolean {
    return run.events.slice(index).some((e) => e.type === "tool_approval_required");
  }
}
