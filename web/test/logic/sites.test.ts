import { describe, expect, it } from "vitest";
import type { Host, Site } from "../../src/api/types";
import { siteUse } from "../../src/logic/sites";

const site = (name: string, high = 0.8, low = 0.2): Site => ({
  name, jurisdictions: ["EU"], vcpu_overcommit: 2, price: {}, water_marks: { high, low }, networks: [], default_network: "",
});
const host = (s: string, used: [number, number, number], cap: [number, number, number], reachable = true): Host => ({
  name: `${s}-h`, site: s, endpoint: "", reachable, last_seen_ms: 0, last_error: "",
  used: { vcpus: used[0], memory_mib: used[1], disk_gib: used[2] },
  capacity: { vcpus: cap[0], memory_mib: cap[1], disk_gib: cap[2] },
});

describe("siteUse", () => {
  it("sums the site's hosts and takes the fullest resource, vCPU after overcommit", () => {
    const u = siteUse(site("dc"), [host("dc", [8, 1024, 10], [8, 8192, 100]), host("dc", [0, 1024, 10], [8, 8192, 100]), host("eu", [99, 99, 99], [100, 100, 100])]);
    expect(u.hosts).toBe(2);
    expect(u.used).toEqual({ vcpus: 8, memory_mib: 2048, disk_gib: 20 });
    // vCPU: 8 of 16*2 = 0.25; memory 0.125; disk 0.1
    expect(u.fraction).toBeCloseTo(0.25);
    expect(u.by).toBe("vcpus");
    expect(u.level).toBe("normal");
  });
  it("judges against the water marks", () => {
    expect(siteUse(site("dc"), [host("dc", [0, 900, 0], [4, 1000, 10])]).level).toBe("high");
    expect(siteUse(site("dc"), [host("dc", [0, 100, 0], [4, 1000, 10])]).level).toBe("low");
    expect(siteUse(site("dc"), []).level).toBe("empty");
    expect(siteUse(site("dc"), [host("dc", [0, 500, 0], [4, 1000, 10], false)]).unreachable).toBe(1);
  });
});
