import { describe, expect, it } from "vitest";
import { agentReport, ApiClient, ApiError, type XhrLike } from "../../src/api/client";

interface Call {
  url: string;
  init: RequestInit;
}

/** A fetch that records each call and answers from a queue. */
function fakeFetch(answers: Response[]) {
  const calls: Call[] = [];
  const fn = async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    const next = answers.shift();
    if (!next) throw new TypeError("Failed to fetch");
    return next;
  };
  return { calls, fn };
}
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
const headersOf = (c: Call) => c.init.headers as Record<string, string>;
const session = { user: "alice", role: "operator", csrf: "tok-123", expires_at_ms: 1 };

describe("ApiClient", () => {
  it("keeps the token from sign-in and sends it on every change, never on reads", async () => {
    const f = fakeFetch([json(session), json({ vms: [] }), json({ id: 1 }, 202), json({ paused: true }), new Response(null, { status: 204 })]);
    const api = new ApiClient({ fetch: f.fn });
    await api.signIn("alice", "pw");
    await api.vms();
    await api.migrate("web1", "cloud-eu");
    await api.pauseMobility();
    await api.signOut();
    const [signIn, list, migrate, pause, out] = f.calls as [Call, Call, Call, Call, Call];
    expect(signIn.init.method).toBe("POST");
    expect(JSON.parse(String(signIn.init.body))).toEqual({ user: "alice", password: "pw" });
    expect(headersOf(signIn)["X-CSRF-Token"]).toBeUndefined(); // no token yet
    expect(list.init.method).toBe("GET");
    expect(headersOf(list)["X-CSRF-Token"]).toBeUndefined();
    expect(headersOf(migrate)["X-CSRF-Token"]).toBe("tok-123");
    expect(headersOf(pause)["X-CSRF-Token"]).toBe("tok-123");
    expect(out.init.method).toBe("DELETE");
    expect(headersOf(out)["X-CSRF-Token"]).toBe("tok-123");
    for (const c of f.calls) {
      expect(c.init.credentials).toBe("same-origin");
      expect(c.url).not.toContain("tok-123"); // never in a URL
    }
  });

  it("sends the documented bodies and paths", async () => {
    const f = fakeFetch([json({ id: 3 }, 202), json({ id: 3 }, 202), json({ vm: {}, placement: {} }, 201), json({ audit: [] })]);
    const api = new ApiClient({ fetch: f.fn });
    api.setCsrf("t");
    await api.migrate("web 1", "cloud-eu");
    await api.cancel(3);
    await api.importVm({ id: "web2", package: "p.ova", start: true });
    await api.audit({ who: "alice", target: "", max: 50 });
    expect(f.calls[0]!.url).toBe("/v1/vms/web%201/migrate");
    expect(JSON.parse(String(f.calls[0]!.init.body))).toEqual({ to: "cloud-eu", reason: "console" });
    expect(f.calls[1]!.url).toBe("/v1/migrations/3/cancel");
    expect(f.calls[1]!.init.method).toBe("POST");
    expect(JSON.parse(String(f.calls[2]!.init.body))).toEqual({ id: "web2", package: "p.ova", start: true });
    expect(f.calls[3]!.url).toBe("/v1/audit?who=alice&max=50");
  });

  it("forgets the token on sign-out", async () => {
    const f = fakeFetch([new Response(null, { status: 204 }), json({ paused: false })]);
    const api = new ApiClient({ fetch: f.fn });
    api.setCsrf("old");
    await api.signOut();
    await api.resumeMobility();
    expect(headersOf(f.calls[1]!)["X-CSRF-Token"]).toBeUndefined();
  });

  it("turns the API's error into an ApiError with its code and message", async () => {
    const f = fakeFetch([json({ error: { code: "sla_violation", message: "jurisdiction US is not in EU" } }, 409)]);
    const api = new ApiClient({ fetch: f.fn });
    const err = await api.migrate("web1", "cloud-us").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(409);
    expect((err as ApiError).code).toBe("sla_violation");
    expect((err as ApiError).message).toBe("jurisdiction US is not in EU");
  });

  it("says what happened when the answer is not the API's JSON, or nothing answers", async () => {
    const f = fakeFetch([new Response("upstream down", { status: 502, statusText: "Bad Gateway" })]);
    const api = new ApiClient({ fetch: f.fn });
    const e1 = (await api.vms().catch((e: unknown) => e)) as ApiError;
    expect(e1.status).toBe(502);
    expect(e1.message).toBe("HTTP 502 Bad Gateway: upstream down");
    const e2 = (await api.vms().catch((e: unknown) => e)) as ApiError;
    expect(e2.code).toBe("network");
    expect(e2.message).toContain("cannot reach the controller");
  });

  it("reports an expired session (401) but not a failed sign-in", async () => {
    let expired = 0;
    const f = fakeFetch([json({ error: { code: "unauthorized", message: "no session" } }, 401), json({ error: { code: "unauthorized", message: "wrong name or password" } }, 401)]);
    const api = new ApiClient({ fetch: f.fn, onUnauthorized: () => expired++ });
    await expect(api.vms()).rejects.toThrow("no session");
    expect(expired).toBe(1);
    await expect(api.signIn("a", "b")).rejects.toThrow("wrong name or password");
    expect(expired).toBe(1);
  });
});

class FakeXhr implements XhrLike {
  static last: FakeXhr;
  method = "";
  url = "";
  headers: Record<string, string> = {};
  body: Blob | null = null;
  withCredentials = false;
  status = 0;
  statusText = "";
  responseText = "";
  upload: XhrLike["upload"] = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  constructor() {
    FakeXhr.last = this;
  }
  open(m: string, u: string) {
    this.method = m;
    this.url = u;
  }
  setRequestHeader(n: string, v: string) {
    this.headers[n] = v;
  }
  send(b: Blob) {
    this.body = b;
  }
  abort() {
    this.onabort?.();
  }
  finish(status: number, text: string) {
    this.status = status;
    this.responseText = text;
    this.onload?.();
  }
}

describe("upload", () => {
  it("PUTs the raw file with the token and reports progress", async () => {
    const api = new ApiClient({ xhr: () => new FakeXhr() });
    api.setCsrf("tok");
    const file = new Blob(["x".repeat(100)]);
    const seen: [number, number][] = [];
    const up = api.upload("web.ova", file, (l, t) => seen.push([l, t]));
    const x = FakeXhr.last;
    expect(x.method).toBe("PUT");
    expect(x.url).toBe("/v1/packages/web.ova");
    expect(x.headers["X-CSRF-Token"]).toBe("tok");
    expect(x.body).toBe(file);
    x.upload.onprogress!({ loaded: 40, total: 100, lengthComputable: true });
    x.upload.onprogress!({ loaded: 100, total: 100, lengthComputable: true });
    x.finish(201, JSON.stringify({ name: "web.ova", size: 100, sha256: null }));
    await expect(up.promise).resolves.toEqual({ name: "web.ova", size: 100, sha256: null });
    expect(seen).toEqual([[40, 100], [100, 100]]);
  });

  it("rejects with the API's message, and on abort", async () => {
    const api = new ApiClient({ xhr: () => new FakeXhr() });
    const up = api.upload("bad.ova", new Blob(["x"]), () => {});
    FakeXhr.last.finish(422, JSON.stringify({ error: { code: "ovf_invalid", message: "the manifest's digest does not match" } }));
    await expect(up.promise).rejects.toThrow("the manifest's digest does not match");
    const up2 = api.upload("b.ova", new Blob(["x"]), () => {});
    up2.abort();
    await expect(up2.promise).rejects.toThrow("cancelled");
  });
});

describe("agentReport", () => {
  it("takes the report out of the agent's record the controller keeps", () => {
    const record = { id: "m-1", phase: "done", report: { wan_bytes: 123, total_s: 4.5 } };
    expect(agentReport(record as never)).toEqual({ wan_bytes: 123, total_s: 4.5 });
  });
  it("keeps a report that is already the report, and null", () => {
    expect(agentReport({ wan_bytes: 7 })).toEqual({ wan_bytes: 7 });
    expect(agentReport(null)).toBeNull();
  });
});
