// A site's use of its capacity, summed over its hosts, judged against its water marks.
import type { Host, Resources, Site } from "../api/types";

export interface SiteUse {
  site: string;
  hosts: number;
  unreachable: number;
  used: Resources;
  capacity: Resources;
  /** The fullest of vCPU (after overcommit), memory and disk, as a fraction of capacity. */
  fraction: number;
  /** Which resource gives that fraction. */
  by: keyof Resources | "";
  level: "empty" | "low" | "normal" | "high";
}

const zero = (): Resources => ({ vcpus: 0, memory_mib: 0, disk_gib: 0 });

export function siteUse(site: Site, hosts: readonly Host[]): SiteUse {
  const mine = hosts.filter((h) => h.site === site.name);
  const used = zero();
  const capacity = zero();
  for (const h of mine) {
    for (const k of ["vcpus", "memory_mib", "disk_gib"] as const) {
      used[k] += h.used?.[k] ?? 0;
      capacity[k] += h.capacity?.[k] ?? 0;
    }
  }
  // vCPUs may be overcommitted: the site's room is capacity times the factor.
  const over = site.vcpu_overcommit > 0 ? site.vcpu_overcommit : 1;
  const parts: [keyof Resources, number][] = [
    ["vcpus", capacity.vcpus > 0 ? used.vcpus / (capacity.vcpus * over) : 0],
    ["memory_mib", capacity.memory_mib > 0 ? used.memory_mib / capacity.memory_mib : 0],
    ["disk_gib", capacity.disk_gib > 0 ? used.disk_gib / capacity.disk_gib : 0],
  ];
  let fraction = 0;
  let by: SiteUse["by"] = "";
  for (const [k, f] of parts) {
    if (f > fraction) {
      fraction = f;
      by = k;
    }
  }
  const high = site.water_marks?.high;
  const low = site.water_marks?.low;
  let level: SiteUse["level"] = "normal";
  if (mine.length === 0 || fraction === 0) level = "empty";
  else if (high !== undefined && fraction > high) level = "high";
  else if (low !== undefined && fraction < low) level = "low";
  return {
    site: site.name,
    hosts: mine.length,
    unreachable: mine.filter((h) => !h.reachable).length,
    used,
    capacity,
    fraction,
    by,
    level,
  };
}
