import { describe, expect, it } from "vitest";
import { slaBadge, slaSummary } from "../../src/logic/sla";

describe("sla", () => {
  it("summarises the clauses", () => {
    expect(slaSummary({})).toBe("no SLA");
    expect(slaSummary(undefined)).toBe("no SLA");
    const s = slaSummary({ downtime_budget_ms: 500, jurisdictions: ["EU", "CH"], mobility: "automatic", max_cost_per_hour: 0.5, currency: "EUR" });
    expect(s).toContain("downtime ≤ 500 ms");
    expect(s).toContain("in EU/CH");
    expect(s).toContain("automatic");
    expect(s).toContain("0.5 EUR/h");
  });
  it("leaves out the clauses the controller sends as null (not set)", () => {
    const s = slaSummary({ downtime_budget_ms: 1000, jurisdictions: ["EU"], max_cost_per_hour: null, availability_percent: null, max_migration_mbps: null } as never);
    expect(s).toBe("downtime ≤ 1000 ms, in EU");
    expect(s).not.toContain("null");
  });
  it("badges compliance or the first violated clause", () => {
    expect(slaBadge({ vm: "a", site: "dc", ok: true, violations: [], link_violations: [] }).text).toBe("compliant");
    const b = slaBadge({ vm: "a", site: "us", ok: false, violations: ["jurisdiction: US not in EU"], link_violations: ["rtt 80 > 30"] });
    expect(b.ok).toBe(false);
    expect(b.text).toBe("violation: jurisdiction: US not in EU (+1 more)");
    expect(b.all).toHaveLength(2);
    expect(slaBadge({ vm: "a", site: "us", ok: false, violations: [], link_violations: ["rtt 80 > 30"] }).text).toBe("violation: rtt 80 > 30");
  });
});
