import { describe, expect, it } from "vitest";
import type { LiveProgress, MigrationProgress } from "../../src/api/types";
import {
  etaSeconds,
  phasePercent,
  prune,
  reconcile,
  reduce,
  reduceOne,
  statusText,
  type MigrationView,
  type ProgressMap,
} from "../../src/logic/progress";

const base = {
  id: 7,
  vm: "web1",
  from: "dc",
  to: "cloud-eu",
  reason: "operator",
  why: "console",
  requested_by: "alice",
  started_at_ms: 1000,
  finished_at_ms: 0,
  downtime_ms: null,
  budget_ms: 500,
  within_budget: null,
  error: "",
} as const;

function ev(phase: string, progress: LiveProgress | null = null, extra: Partial<MigrationProgress> = {}): MigrationProgress {
  return { ...base, state: "running", phase, cancellable: true, progress, ...extra };
}

const disk = (copied: number, t: number): LiveProgress => ({ elapsed_s: t, disk_copied: copied, disk_total: 1000 });
const ram = (sent: number, left: number, t: number): LiveProgress => ({ elapsed_s: t, ram_transferred: sent, ram_remaining: left, ram_total: 2000 });

function run(events: MigrationProgress[], from: ProgressMap = new Map()): { map: ProgressMap; percents: number[] } {
  let map = from;
  const percents: number[] = [];
  for (const e of events) {
    map = reduce(map, e);
    percents.push(map.get(e.id)!.percent);
  }
  return { map, percents };
}

describe("phasePercent", () => {
  it("maps each phase into its band", () => {
    expect(phasePercent("preflight", null)).toBeGreaterThanOrEqual(0);
    expect(phasePercent("prepare_target", null)).toBeLessThanOrEqual(5);
    expect(phasePercent("mirror_disks", disk(0, 1))).toBe(5);
    expect(phasePercent("mirror_disks", disk(500, 1))).toBe(25);
    expect(phasePercent("mirror_disks", disk(1000, 1))).toBe(45);
    expect(phasePercent("precopy_ram", ram(0, 2000, 1))).toBe(45);
    expect(phasePercent("precopy_ram", ram(1000, 1000, 1))).toBe(67.5);
    expect(phasePercent("precopy_ram", ram(2000, 0, 1))).toBe(90);
    expect(phasePercent("switchover", null)).toBeGreaterThanOrEqual(90);
    expect(phasePercent("confirm", null)).toBeLessThanOrEqual(99);
    expect(phasePercent("done", null)).toBe(100);
  });
  it("has nothing to say while rolling back, and survives missing members", () => {
    expect(phasePercent("rolling_back", null)).toBeNull();
    expect(phasePercent("mirror_disks", {})).toBe(5);
    expect(phasePercent("precopy_ram", { ram_transferred: 10 })).toBe(45);
    expect(phasePercent("mirror_disks", { disk_copied: 2000, disk_total: 1000 })).toBe(45);
  });
});

describe("reduce", () => {
  it("goes through every intermediate value the server sent, then 100 when done", () => {
    const { map, percents } = run([
      ev("preflight"),
      ev("prepare_target"),
      ev("mirror_disks", disk(250, 2)),
      ev("mirror_disks", disk(750, 3)),
      ev("precopy_ram", ram(1000, 1000, 4)),
      ev("switchover", null, { cancellable: false }),
      { ...base, state: "done", phase: "done", cancellable: false, progress: null, downtime_ms: 120, within_budget: true, finished_at_ms: 9000 },
    ]);
    expect(percents).toEqual([1, 3, 15, 35, 67.5, 90, 100]);
    const v = map.get(7)!;
    expect(v.ended).toBe(true);
    expect(v.state).toBe("done");
    expect(v.downtimeMs).toBe(120);
    expect(v.cancellable).toBe(false);
    expect(statusText(v)).toBe("done");
  });

  it("never goes back on a stale or out-of-order event", () => {
    const { percents, map } = run([
      ev("mirror_disks", disk(800, 5)),
      ev("mirror_disks", disk(300, 3)), // older (elapsed 3 < 5)
      ev("prepare_target", { elapsed_s: 6 }), // an earlier phase
      ev("mirror_disks", disk(900, 7)),
    ]);
    expect(percents).toEqual([37, 37, 37, 41]);
    expect(map.get(7)!.phase).toBe("mirror_disks");
    expect(map.get(7)!.progress?.disk_copied).toBe(900);
  });

  it("is unchanged by duplicate events", () => {
    const e = ev("precopy_ram", ram(500, 1500, 4));
    const once = reduce(new Map(), e);
    const twice = reduce(once, e);
    expect(twice.get(7)).toEqual(once.get(7));
  });

  it("never reaches 100 before the controller says done", () => {
    const { percents } = run([ev("confirm"), ev("done")]);
    expect(percents[0]).toBeLessThan(100);
    // phase done with state still running: the agent is done, the bar may fill
    expect(percents[1]).toBe(100);
    const { map } = run([ev("precopy_ram", ram(5000, 0, 3))]);
    expect(map.get(7)!.percent).toBeLessThanOrEqual(90);
    expect(map.get(7)!.ended).toBe(false);
  });

  it("is final once ended: later running events do not revive it", () => {
    const { map, percents } = run([
      ev("mirror_disks", disk(500, 2)),
      { ...base, state: "cancelled", phase: "rolled_back", cancellable: false, progress: null },
      ev("precopy_ram", ram(1500, 500, 9)), // late, from before the cancel
    ]);
    const v = map.get(7)!;
    expect(v.ended).toBe(true);
    expect(v.state).toBe("cancelled");
    expect(v.phase).toBe("rolled_back");
    expect(v.cancellable).toBe(false);
    expect(percents).toEqual([25, 25, 25]);
    expect(statusText(v)).toBe("cancelled");
  });

  it("never goes back when the guest dirties RAM faster than it is sent", () => {
    // more RAM left than before: the fraction falls, the bar must not
    const { percents } = run([ev("precopy_ram", ram(1000, 1000, 4)), ev("precopy_ram", ram(1200, 1800, 5)), ev("precopy_ram", { ram_transferred: 1500 })]);
    expect(percents).toEqual([67.5, 67.5, 67.5]);
  });

  it("stays ended when the list ended it and a delayed running event follows", () => {
    let map = reduce(new Map(), ev("mirror_disks", disk(500, 2)));
    map = reconcile(map, [{ ...base, state: "cancelled" }]); // the list has no phase
    map = reduce(map, ev("precopy_ram", ram(1500, 500, 9)));
    const v = map.get(7)!;
    expect(v.ended).toBe(true);
    expect(v.state).toBe("cancelled");
    expect(v.percent).toBe(25);
    expect(v.cancellable).toBe(false);
    expect(statusText(v)).toBe("cancelled");
  });

  it("keeps late facts of an ended migration (report, downtime)", () => {
    const { map } = run([
      { ...base, state: "done", phase: "done" },
      { ...base, state: "done", phase: "done", downtime_ms: 80, report: { total_s: 12, wan_bytes: 1e6, phase_s: { precopy_ram: 5 } } },
    ]);
    const v = map.get(7)!;
    expect(v.percent).toBe(100);
    expect(v.downtimeMs).toBe(80);
    expect(v.report?.wan_bytes).toBe(1e6);
  });

  it("shows a failed move as failed, where it stopped", () => {
    const { map } = run([ev("precopy_ram", ram(1000, 1000, 4)), { ...base, state: "failed", phase: "failed", error: "target lost" }]);
    const v = map.get(7)!;
    expect(v.state).toBe("failed");
    expect(v.percent).toBe(67.5);
    expect(v.error).toBe("target lost");
    expect(statusText(v)).toBe("failed");
  });

  it("holds the bar while rolling back and takes no forward phase after it", () => {
    const { map, percents } = run([ev("precopy_ram", ram(1000, 1000, 4)), ev("rolling_back", { elapsed_s: 5 }, { cancellable: false }), ev("precopy_ram", ram(1900, 100, 4.5))]);
    expect(percents).toEqual([67.5, 67.5, 67.5]);
    expect(map.get(7)!.phase).toBe("rolling_back");
    expect(map.get(7)!.cancellable).toBe(false);
  });

  it("ignores events without an id and keeps migrations apart", () => {
    const m0: ProgressMap = new Map();
    expect(reduce(m0, {} as MigrationProgress)).toBe(m0);
    const { map } = run([ev("mirror_disks", disk(500, 1)), { ...ev("precopy_ram", ram(1, 1, 1)), id: 8, vm: "db1" }]);
    expect(map.get(7)!.percent).toBe(25);
    expect(map.get(8)!.vm).toBe("db1");
  });
});

describe("reconcile", () => {
  it("ends a panel whose final event was missed, and adds running ones", () => {
    const { map } = run([ev("precopy_ram", ram(1000, 1000, 4))]);
    const list = [
      { ...base, state: "done" as const, finished_at_ms: 5000, downtime_ms: 90 },
      { ...base, id: 9, vm: "db1", state: "running" as const },
      { ...base, id: 3, state: "done" as const }, // ended before we looked: not shown
    ];
    const next = reconcile(map, list);
    expect(next.get(7)!.ended).toBe(true);
    expect(next.get(7)!.percent).toBe(100);
    expect(next.get(9)!.ended).toBe(false);
    expect(next.get(9)!.percent).toBe(0);
    expect(next.has(3)).toBe(false);
  });
  it("takes a measured interruption that came after the final event", () => {
    const { map } = run([{ ...base, state: "done", phase: "done" }]);
    expect(map.get(7)!.downtimeMs).toBeNull();
    const next = reconcile(map, [{ ...base, state: "done", downtime_ms: 75, within_budget: true }]);
    expect(next.get(7)!.downtimeMs).toBe(75);
    expect(next.get(7)!.withinBudget).toBe(true);
    expect(next.get(7)!.percent).toBe(100);
  });
  it("returns the same map when nothing changes", () => {
    const { map } = run([ev("mirror_disks", disk(1, 1))]);
    expect(reconcile(map, [{ ...base, state: "running" }])).toBe(map);
  });
});

describe("prune", () => {
  it("keeps running ones and the newest ended", () => {
    let map: ProgressMap = new Map();
    for (let id = 1; id <= 5; id++) map = reduce(map, { ...base, id, state: id === 1 ? "running" : "done" });
    const kept = prune(map, 2);
    expect([...kept.keys()].sort()).toEqual([1, 4, 5]);
  });
});

describe("etaSeconds", () => {
  const view = (phase: string, p: LiveProgress, estimate: MigrationView["estimate"] = null): MigrationView => ({
    ...reduceOne(undefined, ev(phase, p)),
    estimate,
  });
  it("divides RAM left by the rate net of dirtying", () => {
    // 80 Mbit/s = 10 MB/s, dirtying 5 MB/s: 50 MB left takes 10 s
    expect(etaSeconds(view("precopy_ram", { ram_transferred: 1, ram_remaining: 50e6, mbps: 80, dirty_rate_bps: 5e6 }))).toBeCloseTo(10);
  });
  it("is unknown when the guest dirties faster than the link sends", () => {
    expect(etaSeconds(view("precopy_ram", { ram_remaining: 50e6, mbps: 80, dirty_rate_bps: 20e6 }))).toBeNull();
  });
  it("counts disks left plus RAM while mirroring", () => {
    expect(etaSeconds(view("mirror_disks", { disk_copied: 60e6, disk_total: 100e6, ram_total: 60e6, mbps: 80 }))).toBeCloseTo(10);
  });
  it("falls back to the preflight estimate", () => {
    expect(etaSeconds(view("prepare_target", { elapsed_s: 4 }, { duration_s: 30, interruption_ms: 100 }))).toBe(26);
    expect(etaSeconds(view("prepare_target", {}))).toBeNull();
  });
});
