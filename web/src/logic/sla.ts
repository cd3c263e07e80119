// What the VM list says about a VM's SLA: a short summary of its clauses and the verdict
// badge from GET /v1/sla.
import type { Sla, SlaVerdict } from "../api/types";

export function slaSummary(sla: Sla | null | undefined): string {
  if (!sla || Object.keys(sla).length === 0) return "no SLA";
  const parts: string[] = [];
  if (sla.downtime_budget_ms != null) parts.push(`downtime ≤ ${sla.downtime_budget_ms} ms`);
  if (sla.jurisdictions?.length) parts.push(`in ${sla.jurisdictions.join("/")}`);
  if (sla.max_rtt) parts.push(`RTT from ${sla.max_rtt.location} ≤ ${sla.max_rtt.ms} ms`);
  if (sla.max_cost_per_hour != null)
    parts.push(`≤ ${sla.max_cost_per_hour} ${sla.currency ?? ""}/h`.replace(" /h", "/h"));
  if (sla.mobility) parts.push(sla.mobility);
  if (sla.anti_affinity_group) parts.push(`apart from ${sla.anti_affinity_group}`);
  if (sla.availability_percent != null) parts.push(`${sla.availability_percent} % available`);
  if (sla.max_migration_mbps != null) parts.push(`moves ≤ ${sla.max_migration_mbps} Mbit/s`);
  if (sla.encryption_in_transit === "optional") parts.push("encryption optional");
  return parts.length ? parts.join(", ") : "no SLA";
}

export interface Badge {
  ok: boolean;
  text: string;
}

/** "compliant", or "violation: <clause>" with the first clause (all of them in `all`). */
export function slaBadge(v: SlaVerdict | undefined): Badge & { all: string[] } {
  if (!v) return { ok: true, text: "unknown", all: [] };
  const all = [...(v.violations ?? []), ...(v.link_violations ?? [])];
  if (v.ok && all.length === 0) return { ok: true, text: "compliant", all };
  const first = all[0] ?? "not compliant";
  const more = all.length > 1 ? ` (+${all.length - 1} more)` : "";
  return { ok: false, text: `violation: ${first}${more}`, all };
}
