// Reduces the stream of MigrationProgress events (GET /v1/stream) into what a progress panel
// shows. Events can repeat, arrive late after a reconnect, or be missed entirely (the list
// refetch then says how the move ended), so the reduction is defensive:
//  - percent only rises while the move runs (a stale event never pulls the bar back);
//  - an ended migration is final: later "running" events for it are ignored;
//  - every event the server sent moves the bar through its own value (no skipping).
import type {
  Estimate,
  LiveProgress,
  Migration,
  MigrationProgress,
  MigrationReport,
  MigrationState,
} from "../api/types";

export interface MigrationView {
  id: number;
  vm: string;
  from: string;
  to: string;
  reason: string;
  why: string;
  requestedBy: string;
  state: MigrationState;
  phase: string;
  ended: boolean;
  /** 0..100; rises monotonically while running; 100 once done. */
  percent: number;
  cancellable: boolean;
  progress: LiveProgress | null;
  estimate: Estimate | null;
  report: MigrationReport | null;
  downtimeMs: number | null;
  budgetMs: number | null;
  withinBudget: boolean | null;
  error: string;
  startedAtMs: number;
  finishedAtMs: number;
}

export type ProgressMap = ReadonlyMap<number, MigrationView>;

/** Forward phases in the order a move goes through them. */
const FORWARD = ["preflight", "prepare_target", "mirror_disks", "precopy_ram", "switchover", "confirm", "done"];
/** Phases of a move going back; once there, forward phases are stale. */
const BACKWARD = ["rolling_back", "rolled_back", "failed"];

function phaseRank(phase: string): number {
  const f = FORWARD.indexOf(phase);
  if (f >= 0) return f;
  const b = BACKWARD.indexOf(phase);
  return b >= 0 ? 100 + b : -1;
}

const clamp01 = (x: number) => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0);

/**
 * The bar's value for a phase and what the agent said: preflight and prepare share 0..5,
 * the disk mirrors 5..45 by bytes copied, RAM precopy 45..90 by bytes sent against bytes
 * still to send, switchover and confirm 90..99, done 100. Null when the phase says nothing
 * about progress (rolling back): the bar then stays where it was.
 */
export function phasePercent(phase: string, p: LiveProgress | null | undefined): number | null {
  switch (phase) {
    case "preflight":
      return 1;
    case "prepare_target":
      return 3;
    case "mirror_disks": {
      const total = p?.disk_total ?? 0;
      return 5 + 40 * (total > 0 ? clamp01((p?.disk_copied ?? 0) / total) : 0);
    }
    case "precopy_ram": {
      const sent = p?.ram_transferred ?? 0;
      const left = p?.ram_remaining;
      const frac = left === undefined ? 0 : sent + left > 0 ? clamp01(sent / (sent + left)) : 0;
      return 45 + 45 * frac;
    }
    case "switchover":
      return 90;
    case "confirm":
      return 95;
    case "done":
      return 100;
    default:
      return null;
  }
}

export function isEndedState(state: string): boolean {
  return state === "done" || state === "failed" || state === "cancelled";
}

function fresh(ev: Migration): MigrationView {
  return {
    id: ev.id,
    vm: ev.vm,
    from: ev.from,
    to: ev.to,
    reason: ev.reason,
    why: ev.why ?? "",
    requestedBy: ev.requested_by ?? "",
    state: "running",
    phase: "",
    ended: false,
    percent: 0,
    cancellable: false,
    progress: null,
    estimate: null,
    report: null,
    downtimeMs: null,
    budgetMs: null,
    withinBudget: null,
    error: "",
    startedAtMs: ev.started_at_ms ?? 0,
    finishedAtMs: 0,
  };
}

/** True when @p ev is older than what @p v already shows (so its numbers must not apply). */
function isStale(v: MigrationView, ev: MigrationProgress): boolean {
  const had = v.progress?.elapsed_s;
  const got = ev.progress?.elapsed_s;
  if (had !== undefined && got !== undefined && got < had) return true;
  const phase = ev.phase ?? "";
  if (phase && v.phase) {
    const r0 = phaseRank(v.phase);
    const r1 = phaseRank(phase);
    if (r0 >= 0 && r1 >= 0 && r1 < r0) return true;
  }
  return false;
}

/** Members of the record that are final once known (never overwritten by null). */
function mergeRecord(v: MigrationView, ev: MigrationProgress): MigrationView {
  return {
    ...v,
    vm: ev.vm ?? v.vm,
    from: ev.from ?? v.from,
    to: ev.to ?? v.to,
    reason: ev.reason ?? v.reason,
    why: ev.why || v.why,
    requestedBy: ev.requested_by || v.requestedBy,
    startedAtMs: ev.started_at_ms || v.startedAtMs,
    finishedAtMs: ev.finished_at_ms || v.finishedAtMs,
    estimate: ev.estimate ?? v.estimate,
    report: ev.report ?? v.report,
    downtimeMs: ev.downtime_ms ?? v.downtimeMs,
    budgetMs: ev.budget_ms ?? v.budgetMs,
    withinBudget: ev.within_budget ?? v.withinBudget,
    error: ev.error || v.error,
  };
}

/** One event (or a list row, which has no phase) applied to one migration's view. */
export function reduceOne(prev: MigrationView | undefined, ev: MigrationProgress): MigrationView {
  const base = prev ?? fresh(ev);
  const v = mergeRecord(base, ev);
  if (base.ended) return v; // final: only late facts (report, downtime) may still arrive
  const state = (ev.state ?? "running") as MigrationState;
  if (isEndedState(state)) {
    const phase = state === "done" ? "done" : ev.phase && phaseRank(ev.phase) >= 100 ? ev.phase : state;
    return {
      ...v,
      state,
      phase,
      ended: true,
      cancellable: false,
      // done is 100; a cancelled or failed move keeps the point it reached, shown as such
      percent: state === "done" ? 100 : v.percent,
      progress: ev.progress ?? v.progress,
    };
  }
  if (prev && isStale(prev, ev)) return v;
  const phase = ev.phase || v.phase;
  const progress = ev.progress ?? v.progress;
  const target = phase ? phasePercent(phase, progress) : null;
  // Running: never back, and never 100 before the controller says the move ended.
  const percent = Math.min(phase === "done" ? 100 : 99, Math.max(v.percent, target ?? v.percent));
  return {
    ...v,
    state: "running",
    phase,
    progress,
    percent,
    cancellable: ev.cancellable ?? (phase ? v.cancellable : false),
  };
}

export function reduce(state: ProgressMap, ev: MigrationProgress): ProgressMap {
  if (typeof ev?.id !== "number") return state;
  const next = new Map(state);
  next.set(ev.id, reduceOne(state.get(ev.id), ev));
  return next;
}

/**
 * Reconciles with a fresh GET /v1/migrations: running ones not yet shown get a panel, a
 * panel whose migration the list says has ended becomes final even if the stream's last
 * event was lost (a reconnect), so no bar stays stuck, and an ended panel gets the measured
 * interruption if it came later.
 */
export function reconcile(state: ProgressMap, list: readonly Migration[]): ProgressMap {
  let next: Map<number, MigrationView> | null = null;
  for (const m of list) {
    const cur = state.get(m.id);
    const add = !cur && m.state === "running";
    const end = cur && !cur.ended && isEndedState(m.state);
    // The measured interruption may be written after the final event: take it from the list.
    const late = cur && cur.ended && cur.downtimeMs === null && m.downtime_ms !== null && m.downtime_ms !== undefined;
    if (add || end || late) {
      next ??= new Map(state);
      next.set(m.id, reduceOne(cur, m));
    }
  }
  return next ?? state;
}

/** Keeps every running migration and the newest @p keepEnded ended ones. */
export function prune(state: ProgressMap, keepEnded: number): ProgressMap {
  const ended = [...state.values()].filter((v) => v.ended).sort((a, b) => b.id - a.id);
  if (ended.length <= keepEnded) return state;
  const next = new Map(state);
  for (const v of ended.slice(keepEnded)) next.delete(v.id);
  return next;
}

/** Bytes per second the move sends now: the agent's own rate figure. */
export function rateBytesPerS(v: MigrationView): number | null {
  const mbps = v.progress?.mbps;
  return mbps !== undefined && mbps > 0 ? (mbps * 1e6) / 8 : null;
}

/**
 * Seconds left: the bytes still to send over the rate left after the guest's dirtying
 * (RAM precopy), or the disks still to copy plus the RAM; else the preflight estimate minus
 * the time spent. Null when unknown or when the guest dirties faster than the link sends.
 */
export function etaSeconds(v: MigrationView): number | null {
  if (v.ended) return 0;
  const p = v.progress;
  const rate = rateBytesPerS(v);
  if (p && rate) {
    if (v.phase === "precopy_ram" && p.ram_remaining !== undefined) {
      const net = rate - (p.dirty_rate_bps ?? 0);
      return net > 0 ? p.ram_remaining / net : null;
    }
    if (v.phase === "mirror_disks" && p.disk_total !== undefined) {
      const left = Math.max(0, p.disk_total - (p.disk_copied ?? 0)) + (p.ram_total ?? 0);
      return left / rate;
    }
  }
  if (v.estimate && p?.elapsed_s !== undefined) return Math.max(0, v.estimate.duration_s - p.elapsed_s);
  return null;
}

/** What the panel says about where the move is. */
export function statusText(v: MigrationView): string {
  if (v.ended) {
    if (v.state === "done") return "done";
    return v.state === "cancelled" ? "cancelled" : "failed";
  }
  return v.phase ? v.phase.replace(/_/g, " ") : "starting";
}
