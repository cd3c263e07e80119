import { describe, expect, it } from "vitest";
import type { Migration } from "../../src/api/types";
import { interruptionColumns, sampleColumns } from "../../src/logic/charts";

const mig = (id: number, started: number, extra: Partial<Migration> = {}): Migration => ({
  id, vm: "web1", from: "dc", to: "cloud-eu", state: "done", reason: "operator", why: "", requested_by: "",
  started_at_ms: started, finished_at_ms: started + 1000, downtime_ms: 100, budget_ms: 500, within_budget: true, error: "", ...extra,
});

describe("charts", () => {
  it("sorts samples by time and converts the dirty rate (bytes/s) to Mbit/s", () => {
    const cols = sampleColumns([
      { t_s: 2, mbps: 30, dirty_rate_bps: 1e6, wan_bytes: 0, phase: "precopy_ram" },
      { t_s: 1, mbps: 20, dirty_rate_bps: 0, wan_bytes: 0, phase: "mirror_disks" },
    ]);
    expect(cols).toEqual([[1, 2], [20, 30], [0, 8]]);
  });
  it("puts ended migrations in order of their number, leaving running ones out", () => {
    const cols = interruptionColumns([mig(2, 5000), mig(1, 5000), mig(3, 9000, { state: "running" })], new Map([[1, 2 * 1024 * 1024]]));
    expect(cols[0]).toEqual([1, 2]);
    expect(cols[1]).toEqual([100, 100]);
    expect(cols[3]).toEqual([2, null]);
  });
});
