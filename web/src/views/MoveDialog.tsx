// The confirmation before a live move: what the preflight expects the move to cost on
// this link (duration, interruption) against the VM's downtime budget.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Preflight, Vm } from "../api/types";
import { formatDuration, formatMbps, formatMs } from "../logic/format";
import { ErrorBox } from "./common";
import { errorMessage, useConsole } from "./state";

export function MoveDialog({ vm, to, preflight, onClose }: { vm: Vm; to: string; preflight: Preflight; onClose: () => void }) {
  const { api, track, canChange } = useConsole();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const confirmRef = useRef<HTMLButtonElement>(null);
  const est = preflight.estimate;
  const budget = vm.sla?.downtime_budget_ms;

  // The latest onClose, so the effect below runs once (focus moves only on open).
  const closeRef = useRef(onClose);
  closeRef.current = onClose;
  useEffect(() => {
    confirmRef.current?.focus();
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && closeRef.current();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      track(await api.migrate(vm.name, to));
      onClose();
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  const titleId = `move-title-${vm.name}-${to}`;
  return (
    <div class="overlay">
      <div class="card dialog" role="dialog" aria-modal="true" aria-labelledby={titleId}>
        <h2 id={titleId}>
          Move {vm.name} from {vm.site} to {to}
        </h2>
        {est ? (
          <dl class="facts">
            <dt>Expected duration</dt>
            <dd data-testid="estimate-duration">{formatDuration(est.duration_s)}</dd>
            <dt>Expected interruption</dt>
            <dd data-testid="estimate-interruption">
              {formatMs(est.interruption_ms)}
              {budget != null ? ` (budget ${formatMs(budget)})` : ""}
              {budget != null && est.interruption_ms > budget ? <span class="badge bad"> over budget</span> : null}
            </dd>
            {est.rtt_ms !== undefined ? (
              <>
                <dt>Link</dt>
                <dd>
                  RTT {est.rtt_ms.toFixed(1)} ms, {formatMbps(est.mbps)}
                </dd>
              </>
            ) : null}
            {est.basis ? (
              <>
                <dt>Based on</dt>
                <dd>{est.basis}</dd>
              </>
            ) : null}
          </dl>
        ) : (
          <p class="muted">The controller gave no estimate for this link.</p>
        )}
        <p>
          {vm.name} keeps running while its disks and memory are copied; it pauses only for the switchover.
        </p>
        <ErrorBox message={error} what="The move was refused" />
        <div class="actions">
          <button ref={confirmRef} class="primary" onClick={confirm} disabled={busy || !canChange}>
            Confirm move
          </button>
          <button onClick={onClose} disabled={busy}>
            Close
          </button>
        </div>
      </div>
    </div>
  );
}
