// The result of an ended migration: total time, measured interruption against the SLA's
// budget, bytes over the WAN and the time each phase took.
import type { MigrationReport } from "../api/types";
import { formatBytes, formatDuration, formatMs } from "../logic/format";
import { phaseRows, totalSeconds } from "../logic/report";

export interface ResultFacts {
  state: string;
  downtimeMs: number | null;
  budgetMs: number | null;
  withinBudget: boolean | null;
  report: MigrationReport | null;
  error: string;
  startedAtMs: number;
  finishedAtMs: number;
}

/** @p compact: phase timings on one line (the live panels), else as a table (detail page). */
export function Result({ r, compact = false }: { r: ResultFacts; compact?: boolean }) {
  const phases = phaseRows(r.report?.phase_s);
  const total = totalSeconds(r.report, r.startedAtMs, r.finishedAtMs);
  const verdict =
    r.withinBudget === null || r.budgetMs === null ? null : r.withinBudget ? (
      <span class="badge good">within budget</span>
    ) : (
      <span class="badge bad">over budget</span>
    );
  return (
    <div class="result" data-testid="result">
      <dl class="facts">
        <dt>Outcome</dt>
        <dd data-testid="result-state">{r.state}</dd>
        <dt>Total time</dt>
        <dd data-testid="result-total">{formatDuration(total)}</dd>
        <dt>Interruption</dt>
        <dd data-testid="result-interruption">
          {r.downtimeMs === null ? "not measured" : formatMs(r.downtimeMs)}
          {r.report?.interruption_by ? <span class="muted"> ({r.report.interruption_by})</span> : null}
        </dd>
        <dt>Budget</dt>
        <dd data-testid="result-budget">
          {r.budgetMs === null ? "none (best effort)" : formatMs(r.budgetMs)} {verdict}
        </dd>
        <dt>Over the WAN</dt>
        <dd data-testid="result-wan">{formatBytes(r.report?.wan_bytes)}</dd>
      </dl>
      {r.error ? <p class="error-text">{r.error}</p> : null}
      {phases.length && compact ? (
        <p class="small" data-testid="result-phases">
          {phases.map(([p, s]) => `${p.replace(/_/g, " ")} ${formatDuration(s)}`).join(" · ")}
        </p>
      ) : null}
      {phases.length && !compact ? (
        <table class="phases" data-testid="result-phases">
          <thead>
            <tr>
              <th>Phase</th>
              <th>Took</th>
            </tr>
          </thead>
          <tbody>
            {phases.map(([p, s]) => (
              <tr key={p}>
                <td>{p.replace(/_/g, " ")}</td>
                <td>{formatDuration(s)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}
