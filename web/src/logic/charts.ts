// Series for the uPlot charts, as column arrays (uPlot's data layout): x first.
import type { Migration, Sample } from "../api/types";

export type Columns = [number[], ...(number | null)[][]];

/** One migration over time: seconds since start; throughput and dirty rate in Mbit/s. */
export function sampleColumns(samples: readonly Sample[]): Columns {
  const sorted = [...samples].sort((a, b) => a.t_s - b.t_s);
  return [
    sorted.map((s) => s.t_s),
    sorted.map((s) => (Number.isFinite(s.mbps) ? s.mbps : null)),
    // dirty_rate_bps is bytes per second (QEMU's dirty pages times the page size)
    sorted.map((s) => (Number.isFinite(s.dirty_rate_bps) ? (s.dirty_rate_bps * 8) / 1e6 : null)),
  ];
}

/**
 * Across migrations, by id (ids rise with time; x = the migration's number): measured
 * interruption and budget (ms), and WAN bytes (MiB) where the detail is known (the list
 * itself carries no byte count).
 */
export function interruptionColumns(
  list: readonly Migration[],
  wanBytes: ReadonlyMap<number, number>,
): Columns {
  const ended = list.filter((m) => m.state !== "running").sort((a, b) => a.id - b.id);
  return [
    ended.map((m) => m.id),
    ended.map((m) => m.downtime_ms ?? null),
    ended.map((m) => m.budget_ms ?? null),
    ended.map((m) => {
      const b = wanBytes.get(m.id);
      return b === undefined ? null : b / (1024 * 1024);
    }),
  ];
}
