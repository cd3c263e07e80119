import { describe, expect, it } from "vitest";
import type { AuditEntry, Migration } from "../../src/api/types";
import { autonomous, filterAudit, newestFirst } from "../../src/logic/sort";

const mig = (id: number, started: number, extra: Partial<Migration> = {}): Migration => ({
  id, vm: "web1", from: "dc", to: "cloud-eu", state: "done", reason: "operator", why: "", requested_by: "",
  started_at_ms: started, finished_at_ms: started + 1000, downtime_ms: 100, budget_ms: 500, within_budget: true, error: "", ...extra,
});

describe("sorting and filtering", () => {
  it("lists newest first, by start then id", () => {
    expect(newestFirst([mig(1, 100), mig(3, 300), mig(2, 300)]).map((m) => m.id)).toEqual([3, 2, 1]);
  });
  it("keeps the moves vandra made by itself", () => {
    const list = [mig(1, 1), mig(2, 2, { reason: "wander" }), mig(3, 3, { reason: "come_home" }), mig(4, 4, { reason: "drain" }), mig(5, 5, { reason: "sla" })];
    expect(autonomous(list).map((m) => m.id)).toEqual([5, 4, 3, 2]);
  });
  it("filters the audit by every word over every column", () => {
    const e = (seq: number, who: string, action: string, status: number): AuditEntry => ({ seq, at_ms: 0, who, role: "operator", action, target: "web1", status, result: "", reason: "" });
    const list = [e(1, "alice", "migrate", 202), e(2, "bob", "migrate", 403), e(3, "alice", "stop", 200)];
    expect(filterAudit(list, "").length).toBe(3);
    expect(filterAudit(list, "ALICE migrate").map((x) => x.seq)).toEqual([1]);
    expect(filterAudit(list, "403").map((x) => x.seq)).toEqual([2]);
  });
});
