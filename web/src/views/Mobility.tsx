// Mobility: whether vandra moves VMs by itself, what it would move now and why, what it
// holds back (with the clause), and what it already moved by itself.
import { useState } from "preact/hooks";
import { formatMoney, formatMs, formatTime } from "../logic/format";
import { autonomous } from "../logic/sort";
import { ErrorBox, Loading, Section } from "./common";
import { useConsole } from "./state";

function PauseResume({ paused }: { paused: boolean }) {
  const { api, canChange, refresh, report } = useConsole();
  const [busy, setBusy] = useState(false);
  const act = async (pause: boolean) => {
    setBusy(true);
    try {
      await (pause ? api.pauseMobility() : api.resumeMobility());
      refresh("mobility");
    } catch (err) {
      report(pause ? "Pause mobility" : "Resume mobility", err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button onClick={() => act(true)} disabled={!canChange || busy || paused}>
        Pause
      </button>
      <button onClick={() => act(false)} disabled={!canChange || busy || !paused}>
        Resume
      </button>
    </>
  );
}

export function MobilityPage() {
  const { lists, listErrors } = useConsole();
  const mob = lists.mobility;
  const moved = autonomous(lists.migrations ?? []);
  return (
    <>
      <Section title="Mobility" actions={mob ? <PauseResume paused={mob.paused} /> : null}>
        <ErrorBox message={listErrors.mobility} what="Mobility" />
        {!mob ? (
          <Loading what="the mobility plan" />
        ) : (
          <>
            <p data-testid="mobility-state">
              {mob.paused ? (
                <span class="badge bad">paused</span>
              ) : (
                <span class="badge good">active</span>
              )}{" "}
              {mob.paused ? "vandra moves nothing by itself (drains and operators' moves go on)." : "vandra moves VMs by itself when the plan says so."}
            </p>
            <h3>What vandra would move now</h3>
            {mob.plan.moves.length === 0 ? (
              <p class="muted">Nothing.</p>
            ) : (
              <table>
                <thead>
                  <tr>
                    <th>VM</th>
                    <th>From</th>
                    <th>To</th>
                    <th>Reason</th>
                    <th>Why</th>
                    <th>Cost/h before → after</th>
                  </tr>
                </thead>
                <tbody>
                  {mob.plan.moves.map((m) => (
                    <tr key={m.vm}>
                      <td>{m.vm}</td>
                      <td>
                        {m.from} <span class="muted small">{m.from_host}</span>
                      </td>
                      <td>
                        {m.to} <span class="muted small">{m.to_host}</span>
                      </td>
                      <td>{m.reason}</td>
                      <td>{m.why}</td>
                      <td>
                        {formatMoney(m.cost_per_hour_before)} → {formatMoney(m.cost_per_hour_after)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            <h3>Held back</h3>
            {mob.plan.held.length === 0 ? (
              <p class="muted">Nothing.</p>
            ) : (
              <ul>
                {mob.plan.held.map((h) => (
                  <li key={h.vm}>
                    <strong>{h.vm}</strong> at {h.site} {h.wanted ? `wants ${h.wanted}` : ""}: {h.why || h.reason}
                    {h.reasons?.length ? (
                      <ul>
                        {h.reasons.map((r) => (
                          <li key={r.site}>
                            {r.site}: {r.clause}
                          </li>
                        ))}
                      </ul>
                    ) : null}
                  </li>
                ))}
              </ul>
            )}
          </>
        )}
      </Section>
      <Section title="Moved by vandra itself">
        {moved.length === 0 ? (
          <p class="muted">No move yet.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>#</th>
                <th>VM</th>
                <th>From → to</th>
                <th>Reason</th>
                <th>Why</th>
                <th>State</th>
                <th>Interruption</th>
                <th>When</th>
              </tr>
            </thead>
            <tbody>
              {moved.map((m) => (
                <tr key={m.id}>
                  <td>
                    <a href={`#/history/${m.id}`}>{m.id}</a>
                  </td>
                  <td>{m.vm}</td>
                  <td>
                    {m.from} → {m.to}
                  </td>
                  <td>{m.reason}</td>
                  <td>{m.why}</td>
                  <td>{m.state}</td>
                  <td>{formatMs(m.downtime_ms)}</td>
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
