import { afterEach, describe, expect, it, vi } from "vitest";
import { openStream, type EventSourceLike } from "../../src/api/stream";
import type { MigrationProgress } from "../../src/api/types";

class FakeES implements EventSourceLike {
  static all: FakeES[] = [];
  readyState = 0;
  onopen: ((e: Event) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  listeners = new Map<string, (e: MessageEvent) => void>();
  closed = false;
  constructor(readonly url: string) {
    FakeES.all.push(this);
  }
  addEventListener(t: string, fn: (e: MessageEvent) => void) {
    this.listeners.set(t, fn);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  emit(t: string, data: string) {
    this.listeners.get(t)?.({ data } as MessageEvent);
  }
  open() {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }
}

afterEach(() => {
  FakeES.all = [];
  vi.useRealTimers();
});

function handlers() {
  const got = { migrations: [] as MigrationProgress[], changed: [] as string[], connected: [] as boolean[], down: 0 };
  return {
    got,
    h: {
      onMigration: (m: MigrationProgress) => got.migrations.push(m),
      onChanged: (w: string) => got.changed.push(w),
      onConnected: (again: boolean) => got.connected.push(again),
      onDown: () => got.down++,
    },
  };
}

describe("openStream", () => {
  it("passes migration and changed events on and drops malformed ones", () => {
    const { got, h } = handlers();
    openStream(h, (u) => new FakeES(u));
    const es = FakeES.all[0]!;
    expect(es.url).toBe("/v1/stream");
    es.open();
    es.emit("migration", JSON.stringify({ id: 4, vm: "web1", state: "running" }));
    es.emit("migration", "{not json");
    es.emit("migration", JSON.stringify({ vm: "no id" }));
    es.emit("changed", JSON.stringify({ what: "vms" }));
    expect(got.migrations.map((m) => m.id)).toEqual([4]);
    expect(got.changed).toEqual(["vms"]);
    expect(got.connected).toEqual([false]);
  });

  it("says when it connected again, so the lists are refetched", () => {
    const { got, h } = handlers();
    openStream(h, (u) => new FakeES(u));
    const es = FakeES.all[0]!;
    es.open();
    es.readyState = 0; // the browser reconnects by itself
    es.onerror!({} as Event);
    es.open();
    expect(got.down).toBe(1);
    expect(got.connected).toEqual([false, true]);
    expect(FakeES.all).toHaveLength(1);
  });

  it("reopens a stream the server closed, and stops when asked", () => {
    vi.useFakeTimers();
    const { got, h } = handlers();
    const stop = openStream(h, (u) => new FakeES(u));
    const first = FakeES.all[0]!;
    first.readyState = 2;
    first.onerror!({} as Event);
    expect(first.closed).toBe(true);
    vi.advanceTimersByTime(1000);
    expect(FakeES.all).toHaveLength(2);
    FakeES.all[1]!.open();
    expect(got.connected).toEqual([false]); // never connected before the server closed it
    stop();
    expect(FakeES.all[1]!.closed).toBe(true);
  });
});
