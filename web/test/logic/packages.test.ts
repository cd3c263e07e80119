import { describe, expect, it } from "vitest";
import type { PackageDetail } from "../../src/api/types";
import { packageName, placementOf } from "../../src/logic/packages";
import { phaseRows, totalSeconds } from "../../src/logic/report";

describe("packages and reports", () => {
  const pkg = (placement: PackageDetail["placement"]): PackageDetail => ({ name: "p", size: 1, sha256: null, signature: "unsigned", vms: [], placement });
  it("says where placement would go, or why nowhere", () => {
    expect(placementOf(pkg({ site: "dc", host: "h1", cost_per_hour: 0.1, networks: {} }))).toMatchObject({ ok: true, site: "dc", host: "h1" });
    expect(placementOf(pkg({ error: { code: "no_site", message: "no site keeps jurisdiction EU" } }))).toEqual({ ok: false, why: "no site keeps jurisdiction EU" });
  });
  it("makes file names valid package names", () => {
    expect(packageName("web.ova")).toBe("web.ova");
    expect(packageName("my vm (2).ova")).toBe("my_vm_2_.ova");
    expect(packageName(".hidden.ova")).toBe("_.hidden.ova");
    expect(packageName("x".repeat(80))).toHaveLength(64);
  });
  it("orders phase timings as the move ran and finds the total", () => {
    expect(phaseRows({ switchover: 1, mirror_disks: 5, preflight: 0.1, zzz: 2 }).map(([p]) => p)).toEqual(["preflight", "mirror_disks", "switchover", "zzz"]);
    expect(totalSeconds({ total_s: 12 }, 0, 0)).toBe(12);
    expect(totalSeconds(null, 1000, 4000)).toBe(3);
    expect(totalSeconds(null, 1000, 0)).toBeNull();
  });
});
