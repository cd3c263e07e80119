// Live migration panels, shown on every page of every open console (they come from the
// stream, not from the browser that pressed the button). Once a move ended the panel keeps
// its final state and result until dismissed.
import { useEffect, useState } from "preact/hooks";
import { formatBytes, formatBytesRate, formatDuration, formatMs } from "../logic/format";
import { etaSeconds, rateBytesPerS, statusText, type MigrationView } from "../logic/progress";
import { Result } from "./Result";
import { useConsole } from "./state";

function Bar({ v }: { v: MigrationView }) {
  // floor: a running move never shows 100 (the reducer caps it at 99 anyway)
  const now = Math.floor(v.percent);
  const status = statusText(v);
  return (
    <div
      class={`bar ${v.ended ? v.state : "running"}`}
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={now}
      aria-valuetext={`${now} %, ${status}`}
      aria-label={`${v.vm} to ${v.to}`}
      data-state={v.ended ? v.state : "running"}
    >
      <div class="bar-fill" style={{ width: `${now}%` }} />
      <span class="bar-text">
        {now} % · {status}
      </span>
    </div>
  );
}

function LiveFacts({ v }: { v: MigrationView }) {
  const p = v.progress;
  const rate = rateBytesPerS(v);
  const eta = etaSeconds(v);
  const expected = p?.expected_downtime_ms ?? v.estimate?.interruption_ms;
  return (
    <dl class="facts live">
      <dt>Disks</dt>
      <dd>{p?.disk_total ? `${formatBytes(p.disk_copied ?? 0)} of ${formatBytes(p.disk_total)}` : "—"}</dd>
      <dt>RAM</dt>
      <dd>
        {p?.ram_total !== undefined || p?.ram_transferred !== undefined
          ? `${formatBytes(p?.ram_transferred ?? 0)} sent, ${formatBytes(p?.ram_remaining)} left of ${formatBytes(p?.ram_total)}`
          : "—"}
      </dd>
      <dt>Over the WAN</dt>
      <dd data-testid="live-wan">{formatBytes(p?.wan_bytes)}</dd>
      <dt>Rate</dt>
      <dd>
        {formatBytesRate(rate)}
        {p?.dirty_rate_bps !== undefined ? <span class="muted"> (guest dirties {formatBytesRate(p.dirty_rate_bps)})</span> : null}
      </dd>
      <dt>Elapsed</dt>
      <dd>{formatDuration(p?.elapsed_s)}</dd>
      <dt>ETA</dt>
      <dd data-testid="live-eta">{eta === null ? (v.phase === "precopy_ram" && rate ? "not converging yet" : "—") : formatDuration(eta)}</dd>
      <dt>Expected interruption</dt>
      <dd>
        {formatMs(expected)}
        {v.budgetMs !== null ? <span class="muted"> (budget {formatMs(v.budgetMs)})</span> : null}
      </dd>
    </dl>
  );
}

function Panel({ v }: { v: MigrationView }) {
  const { api, canChange, report, dismiss, track } = useConsole();
  const [busy, setBusy] = useState(false);

  // The final event may come before the report is complete: ask for the record itself.
  useEffect(() => {
    if (!v.ended || v.report) return;
    let live = true;
    const fetchOnce = () =>
      api.migration(v.id).then(
        (d) => live && track(d),
        (err) => live && report(`Migration ${v.id}`, err),
      );
    void fetchOnce();
    const again = setTimeout(fetchOnce, 3000);
    return () => {
      live = false;
      clearTimeout(again);
    };
  }, [v.ended, v.report === null, v.id]);

  const cancel = async () => {
    setBusy(true);
    try {
      track(await api.cancel(v.id));
    } catch (err) {
      report(`Cancel migration ${v.id} (${v.vm})`, err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <article class={`card migration ${v.ended ? "ended" : ""}`} data-testid="migration-panel" data-migration={v.id} data-vm={v.vm} data-to={v.to} data-state={v.ended ? v.state : "running"} data-phase={v.phase}>
      <header class="card-head">
        <h3>
          {v.vm}: {v.from} → {v.to}
        </h3>
        <span class="muted small">
          #{v.id} · {v.reason}
          {v.requestedBy ? ` by ${v.requestedBy}` : ""}
          {v.why ? ` · ${v.why}` : ""}
        </span>
      </header>
      <Bar v={v} />
      <p class="phase" data-testid="migration-status" data-state={v.ended ? v.state : "running"}>
        {v.ended ? <strong>{statusText(v)}</strong> : <>Phase: {statusText(v)}</>}
      </p>
      {v.ended ? <Result r={v} compact /> : <LiveFacts v={v} />}
      <div class="actions">
        {!v.ended ? (
          <button class="danger" onClick={cancel} disabled={!canChange || !v.cancellable || busy} title={v.cancellable ? undefined : "past the switchover: cannot be cancelled"}>
            Cancel
          </button>
        ) : (
          <>
            <a href={`#/history/${v.id}`}>Details</a>
            <button onClick={() => dismiss(v.id)}>Dismiss</button>
          </>
        )}
      </div>
    </article>
  );
}

export function ProgressPanels() {
  const { progress } = useConsole();
  const views = [...progress.values()].sort((a, b) => Number(a.ended) - Number(b.ended) || b.id - a.id);
  if (views.length === 0) return null;
  return (
    <section class="panels" aria-label="Migrations in progress">
      {views.map((v) => (
        <Panel key={v.id} v={v} />
      ))}
    </section>
  );
}
