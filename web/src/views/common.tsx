// Small pieces every page uses: error boxes, a loading line, a section title.
import type { ComponentChildren } from "preact";

/** An API error, shown with the controller's message (never swallowed). */
export function ErrorBox({ message, what }: { message: string | undefined | null; what?: string }) {
  if (!message) return null;
  return (
    <div class="error" role="alert">
      {what ? <strong>{what}: </strong> : null}
      {message}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p class="muted">Loading {what}…</p>;
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{title}</h2>
        {actions ? <div class="actions">{actions}</div> : null}
      </header>
      {children}
    </section>
  );
}

/** A horizontal gauge with optional water-mark ticks (fractions 0..1). */
export function Gauge({ fraction, marks, label, level }: { fraction: number; marks?: { at: number; name: string }[]; label: string; level?: string }) {
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  return (
    <div class={`gauge ${level ?? ""}`} role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)}>
      <div class="gauge-fill" style={{ width: `${pct}%` }} />
      {(marks ?? []).map((m) => (
        <div class="gauge-mark" key={m.name} style={{ left: `${m.at * 100}%` }} title={`${m.name} water mark ${Math.round(m.at * 100)} %`} />
      ))}
    </div>
  );
}
