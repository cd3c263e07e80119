// The live event stream, GET /v1/stream (server-sent events, session cookie). EventSource
// reconnects by itself after a dropped connection; when the server refused the stream
// (readyState CLOSED, e.g. a 401 or a restart) we reopen it ourselves with a growing delay.
// Each (re)connection is reported so the lists are refetched: events may have been missed.
import type { ListName, MigrationProgress } from "./types";

export interface StreamHandlers {
  onMigration(ev: MigrationProgress): void;
  onChanged(what: ListName): void;
  /** Connected; @p again is true after the first time (lists may be stale). */
  onConnected(again: boolean): void;
  onDown(): void;
}

export interface EventSourceLike {
  readyState: number;
  onopen: ((e: Event) => void) | null;
  onerror: ((e: Event) => void) | null;
  addEventListener(type: string, fn: (e: MessageEvent) => void): void;
  close(): void;
}

const CLOSED = 2;

export function openStream(
  h: StreamHandlers,
  make: (url: string) => EventSourceLike = (url) => new EventSource(url),
): () => void {
  let es: EventSourceLike | null = null;
  let connectedBefore = false;
  let delayMs = 1000;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;

  const parse = (e: MessageEvent): unknown => {
    try {
      return JSON.parse(String(e.data));
    } catch {
      return null; // a malformed event is dropped; the next one (or a refetch) corrects it
    }
  };

  const connect = () => {
    es = make("/v1/stream");
    es.onopen = () => {
      delayMs = 1000;
      h.onConnected(connectedBefore);
      connectedBefore = true;
    };
    es.addEventListener("migration", (e) => {
      const m = parse(e) as MigrationProgress | null;
      if (m && typeof m.id === "number") h.onMigration(m);
    });
    es.addEventListener("changed", (e) => {
      const c = parse(e) as { what?: ListName } | null;
      if (c?.what) h.onChanged(c.what);
    });
    es.onerror = () => {
      h.onDown();
      if (es && es.readyState === CLOSED && !stopped) {
        es.close();
        es = null;
        timer = setTimeout(connect, delayMs);
        delayMs = Math.min(delayMs * 2, 30000);
      }
    };
  };
  connect();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    es?.close();
  };
}
