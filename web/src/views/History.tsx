// History: every migration, newest first, and across migrations their measured interruption
// against the budget and their bytes over the WAN (a uPlot chart).
import { useEffect, useMemo, useState } from "preact/hooks";
import type { Migration } from "../api/types";
import { interruptionColumns } from "../logic/charts";
import { formatBytes, formatMs, formatTime } from "../logic/format";
import { newestFirst } from "../logic/sort";
import { Chart, type SeriesSpec } from "./Chart";
import { ErrorBox, Loading, Section } from "./common";
import { errorMessage, useConsole } from "./state";

/** The list has no byte counts: ended migrations' details are asked once each (they no longer change). */
const DETAIL_LIMIT = 50;
const wanCache = new Map<number, number>();

function useWanBytes(list: Migration[] | undefined) {
  const { api } = useConsole();
  const [wan, setWan] = useState<ReadonlyMap<number, number>>(new Map(wanCache));
  const [error, setError] = useState<string | null>(null);
  const want = (list ?? []).filter((m) => m.state !== "running" && !wanCache.has(m.id)).slice(0, DETAIL_LIMIT);
  const sig = want.map((m) => m.id).join(",");
  useEffect(() => {
    let live = true;
    for (const m of want) {
      api.migration(m.id).then(
        (d) => {
          const b = d.report?.wan_bytes;
          if (typeof b === "number") wanCache.set(m.id, b);
          if (live) setWan(new Map(wanCache));
        },
        (err) => live && setError(`migration ${m.id}: ${errorMessage(err)}`),
      );
    }
    return () => {
      live = false;
    };
  }, [sig]);
  return { wan, error };
}

const SERIES: SeriesSpec[] = [
  { label: "interruption", color: "#c0392b", unit: "ms", points: true },
  { label: "budget", color: "#7f8c8d", unit: "ms", dash: [6, 4], points: true },
  { label: "WAN", color: "#2471a3", unit: "MiB", scale: "mib", points: true },
];

export function HistoryPage() {
  const { lists, listErrors } = useConsole();
  const list = lists.migrations;
  const { wan, error } = useWanBytes(list);
  const rows = useMemo(() => newestFirst(list ?? []), [list]);
  const data = useMemo(() => interruptionColumns(list ?? [], wan), [list, wan]);
  return (
    <>
      <Section title="Interruption and bytes per migration">
        <ErrorBox message={error} what="Details" />
        {list ? <Chart testId="chart-interruptions" title="Interruption (ms) and WAN bytes (MiB) per migration" data={data} series={SERIES} xLabel="migration #" integerX /> : <Loading what="migrations" />}
      </Section>
      <Section title="Migrations">
        <ErrorBox message={listErrors.migrations} what="Migrations" />
        {!list ? null : rows.length === 0 ? (
          <p class="muted">No migration yet.</p>
        ) : (
          <table class="history">
            <thead>
              <tr>
                <th>#</th>
                <th>VM</th>
                <th>From</th>
                <th>To</th>
                <th>Reason</th>
                <th>State</th>
                <th>Interruption</th>
                <th>Budget</th>
                <th>WAN bytes</th>
                <th>When</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((m) => (
                <tr key={m.id} data-migration={m.id}>
                  <td>
                    <a href={`#/history/${m.id}`}>{m.id}</a>
                  </td>
                  <td>{m.vm}</td>
                  <td>{m.from}</td>
                  <td>{m.to}</td>
                  <td title={m.why || undefined}>{m.reason}</td>
                  <td>
                    <span class={`state ${m.state}`}>{m.state}</span>
                  </td>
                  <td>{formatMs(m.downtime_ms)}</td>
                  <td>
                    {formatMs(m.budget_ms)}
                    {m.within_budget === false ? <span class="badge bad"> over</span> : null}
                  </td>
                  <td>{formatBytes(wan.get(m.id))}</td>
                  <td>{formatTime(m.started_at_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </>
  );
}
