// One migration: its record and result, and its throughput and dirty rate over time from
// the samples the controller recorded while following it.
import { useEffect, useMemo, useState } from "preact/hooks";
import type { MigrationDetail, Sample } from "../api/types";
import { sampleColumns } from "../logic/charts";
import { formatTime } from "../logic/format";
import { Chart, type SeriesSpec } from "./Chart";
import { ErrorBox, Loading, Section } from "./common";
import { Result } from "./Result";
import { errorMessage, useConsole } from "./state";

const SERIES: SeriesSpec[] = [
  { label: "throughput", color: "#2471a3", unit: "Mbit/s" },
  { label: "dirty rate", color: "#d35400", unit: "Mbit/s", dash: [6, 4] },
];

export function MigrationPage({ id }: { id: number }) {
  const { api, progress } = useConsole();
  const [detail, setDetail] = useState<MigrationDetail | null>(null);
  const [samples, setSamples] = useState<Sample[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [samplesError, setSamplesError] = useState<string | null>(null);
  // Asked again when the live panel says the move ended (report and samples complete).
  const endedLive = progress.get(id)?.ended ?? false;

  useEffect(() => {
    let live = true;
    setError(null);
    api.migration(id).then(
      (d) => live && setDetail(d),
      (err) => live && setError(errorMessage(err)),
    );
    api.samples(id).then(
      (s) => live && setSamples(s),
      (err) => live && setSamplesError(errorMessage(err)),
    );
    return () => {
      live = false;
    };
  }, [id, endedLive]);

  const data = useMemo(() => sampleColumns(samples ?? []), [samples]);
  return (
    <>
      <Section title={`Migration #${id}`} actions={<a href="#/history">All migrations</a>}>
        <ErrorBox message={error} what="Migration" />
        {!detail ? (
          error ? null : <Loading what="the migration" />
        ) : (
          <div data-testid="migration-detail" data-state={detail.state}>
            <p>
              <strong>{detail.vm}</strong>: {detail.from} → {detail.to} · {detail.reason}
              {detail.requested_by ? ` by ${detail.requested_by}` : ""} · started {formatTime(detail.started_at_ms)}
              {detail.why ? <span class="muted"> · {detail.why}</span> : null}
            </p>
            {detail.state === "running" ? (
              <p class="muted">Running{detail.live?.phase ? `: ${detail.live.phase.replace(/_/g, " ")}` : ""} (live progress above).</p>
            ) : (
              <Result
                r={{
                  state: detail.state,
                  downtimeMs: detail.downtime_ms,
                  budgetMs: detail.budget_ms,
                  withinBudget: detail.within_budget,
                  report: detail.report,
                  error: detail.error,
                  startedAtMs: detail.started_at_ms,
                  finishedAtMs: detail.finished_at_ms,
                }}
              />
            )}
          </div>
        )}
      </Section>
      <Section title="Throughput and dirty rate">
        <ErrorBox message={samplesError} what="Samples" />
        {samples ? (
          <>
            <p class="muted small" data-testid="sample-count">
              {samples.length} samples
            </p>
            <Chart testId="chart-throughput" title="Throughput and guest dirty rate (Mbit/s)" data={data} series={SERIES} xLabel="seconds since start" />
          </>
        ) : samplesError ? null : (
          <Loading what="samples" />
        )}
      </Section>
    </>
  );
}
