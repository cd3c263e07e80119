// Reading an ended migration's report (free-form JSON from the agent).
import type { MigrationReport } from "../api/types";

/** Phases in the order a move runs them; unknown ones go last. */
const PHASE_ORDER = ["preflight", "prepare_target", "mirror_disks", "precopy_ram", "switchover", "confirm", "rolling_back"];

/** The report's phase timings, in the order the move ran them. */
export function phaseRows(phaseS: Record<string, number> | undefined): [string, number][] {
  const entries = Object.entries(phaseS ?? {}).filter(([, v]) => typeof v === "number");
  const rank = (p: string) => {
    const i = PHASE_ORDER.indexOf(p);
    return i < 0 ? PHASE_ORDER.length : i;
  };
  return entries.sort((a, b) => rank(a[0]) - rank(b[0]));
}

/** The agent's total, else the controller's start and finish times. */
export function totalSeconds(report: MigrationReport | null | undefined, startedAtMs: number, finishedAtMs: number): number | null {
  if (typeof report?.total_s === "number") return report.total_s;
  return finishedAtMs && startedAtMs && finishedAtMs >= startedAtMs ? (finishedAtMs - startedAtMs) / 1000 : null;
}
