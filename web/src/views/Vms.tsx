// VMs: where each runs, its state and SLA with the compliance badge, and one `Move to SITE`
// button per other site, enabled only when the controller's preflight says the move may go.
import { useEffect, useMemo, useState } from "preact/hooks";
import type { Preflight, Vm } from "../api/types";
import { slaBadge, slaSummary } from "../logic/sla";
import { byName } from "../logic/sort";
import { ErrorBox, Loading, Section } from "./common";
import { MoveDialog } from "./MoveDialog";
import { errorMessage, useConsole } from "./state";

type PreflightAnswer = { ok: true; value: Preflight } | { ok: false; error: string };
const PREFLIGHT_REFRESH_MS = 30000;
const key = (vm: string, site: string) => `${vm}\u0000${site}`;

/** Asks the preflight for every VM and other site when the inventory changes (and every 30 s). */
function usePreflights(vms: Vm[] | undefined, sites: string[]) {
  const { api } = useConsole();
  const [answers, setAnswers] = useState<Map<string, PreflightAnswer>>(new Map());
  const [tick, setTick] = useState(0);
  // Only what changes a preflight's answer re-asks it, not each 10 s poll.
  const signature = (vms ?? []).map((v) => `${v.name}@${v.site}/${v.host}/${v.state}`).join(",") + "|" + sites.join(",");
  useEffect(() => {
    const t = setInterval(() => setTick((x) => x + 1), PREFLIGHT_REFRESH_MS);
    return () => clearInterval(t);
  }, []);
  useEffect(() => {
    let live = true;
    for (const vm of vms ?? []) {
      for (const site of sites) {
        if (site === vm.site) continue;
        api.preflight(vm.name, site).then(
          (value) => live && setAnswers((m) => new Map(m).set(key(vm.name, site), { ok: true, value })),
          (err) => live && setAnswers((m) => new Map(m).set(key(vm.name, site), { ok: false, error: errorMessage(err) })),
        );
      }
    }
    return () => {
      live = false;
    };
  }, [signature, tick]);
  return answers;
}

function MoveButton({ vm, site, answer, moving, onMove }: { vm: Vm; site: string; answer: PreflightAnswer | undefined; moving: string | null; onMove: (p: Preflight) => void }) {
  const { canChange } = useConsole();
  let reason = "";
  if (!canChange) reason = "read-only: signed in as viewer";
  else if (moving) reason = moving;
  else if (!answer) reason = "checking…";
  else if (!answer.ok) reason = `preflight failed: ${answer.error}`;
  else if (!answer.value.ok) reason = answer.value.refusals.map((r) => r.clause || r.code).join("; ") || "refused";
  const enabled = canChange && !moving && answer?.ok === true && answer.value.ok;
  const refused = answer?.ok === true && !answer.value.ok;
  const reasonId = `why-${vm.name}-${site}`;
  return (
    <div class="move">
      <button
        class="move-btn"
        disabled={!enabled}
        title={reason || undefined}
        aria-describedby={reason ? reasonId : undefined}
        onClick={() => answer?.ok && onMove(answer.value)}
      >
        Move to {site}
      </button>
      {reason ? (
        <span id={reasonId} class={refused ? "reason refused" : "reason"} data-testid={refused ? "refusal" : undefined}>
          {reason}
        </span>
      ) : null}
    </div>
  );
}

function StartStop({ vm }: { vm: Vm }) {
  const { api, canChange, refresh, report } = useConsole();
  const [busy, setBusy] = useState(false);
  const act = async (what: "start" | "stop") => {
    // Stopping cuts the guest off: ask first, as other consoles do.
    if (what === "stop" && !window.confirm(`Stop ${vm.name}? Its guest is powered off.`)) return;
    setBusy(true);
    try {
      await (what === "start" ? api.startVm(vm.name) : api.stopVm(vm.name));
      refresh("vms");
    } catch (err) {
      report(`${what === "start" ? "Start" : "Stop"} ${vm.name}`, err);
    } finally {
      setBusy(false);
    }
  };
  const running = vm.state === "running";
  return (
    <button disabled={!canChange || busy || vm.state === "migrating"} onClick={() => act(running ? "stop" : "start")}>
      {running ? "Stop" : "Start"}
    </button>
  );
}

export function VmsPage() {
  const { lists, listErrors, progress } = useConsole();
  const { vms, sites, sla } = lists;
  const siteNames = useMemo(() => (sites ?? []).map((s) => s.name).sort(), [sites]);
  const answers = usePreflights(vms, siteNames);
  const [dialog, setDialog] = useState<{ vm: Vm; to: string; preflight: Preflight } | null>(null);
  const verdicts = new Map((sla?.vms ?? []).map((v) => [v.vm, v]));
  // A VM already moving gets no second move.
  const moving = new Map<string, string>();
  for (const m of progress.values()) if (!m.ended) moving.set(m.vm, `moving to ${m.to}`);

  return (
    <Section title="Virtual machines">
      <ErrorBox message={listErrors.vms} what="VMs" />
      <ErrorBox message={listErrors.sla} what="SLA status" />
      {!vms ? (
        <Loading what="VMs" />
      ) : vms.length === 0 ? (
        <p class="muted">No VMs yet: import one.</p>
      ) : (
        <table class="vms">
          <thead>
            <tr>
              <th>Name</th>
              <th>Site</th>
              <th>Host</th>
              <th>State</th>
              <th>SLA</th>
              <th>Compliance</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {byName(vms).map((vm) => {
              const badge = slaBadge(verdicts.get(vm.name));
              return (
                <tr key={vm.name} data-vm={vm.name}>
                  <td>
                    <strong>{vm.name}</strong>
                    <div class="muted small">
                      {vm.vcpus} vCPU · {(vm.memory_mib / 1024).toFixed(1)} GiB · {vm.disk_gib} GiB disk
                    </div>
                  </td>
                  <td>
                    <span data-testid="vm-site">{vm.site}</span>
                    {vm.home_site && vm.home_site !== vm.site ? <div class="muted small">home {vm.home_site}</div> : null}
                  </td>
                  <td>{vm.host}</td>
                  <td>
                    <span class={`state ${vm.state}`} data-testid="vm-state">
                      {vm.state}
                    </span>
                  </td>
                  <td class="small">{slaSummary(vm.sla)}</td>
                  <td>
                    <span class={badge.ok ? "badge good" : "badge bad"} title={badge.all.join("\n") || undefined} data-testid="sla-badge">
                      {badge.text}
                    </span>
                  </td>
                  <td class="vm-actions">
                    {siteNames
                      .filter((s) => s !== vm.site)
                      .map((s) => (
                        <MoveButton
                          key={s}
                          vm={vm}
                          site={s}
                          answer={answers.get(key(vm.name, s))}
                          moving={moving.get(vm.name) ?? null}
                          onMove={(p) => setDialog({ vm, to: s, preflight: p })}
                        />
                      ))}
                    <StartStop vm={vm} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {dialog ? <MoveDialog vm={dialog.vm} to={dialog.to} preflight={dialog.preflight} onClose={() => setDialog(null)} /> : null}
    </Section>
  );
}
