// Sites: capacity in use against the water marks, price, jurisdictions; and the links
// between sites with RTT and throughput, measured or configured.
import { formatMbps, formatMoney, formatPercent, formatTime } from "../logic/format";
import { siteUse } from "../logic/sites";
import { byName } from "../logic/sort";
import { ErrorBox, Gauge, Loading, Section } from "./common";
import { useConsole } from "./state";

const RESOURCE = { vcpus: "vCPU", memory_mib: "memory", disk_gib: "disk", "": "" } as const;

export function SitesPage() {
  const { lists, listErrors } = useConsole();
  const { sites, hosts, links } = lists;
  return (
    <>
      <Section title="Sites">
        <ErrorBox message={listErrors.sites} what="Sites" />
        <ErrorBox message={listErrors.hosts} what="Hosts" />
        {!sites ? (
          <Loading what="sites" />
        ) : (
          <div class="site-grid">
            {byName(sites).map((s) => {
              const use = siteUse(s, hosts ?? []);
              const marks = [
                ...(s.water_marks?.low !== undefined ? [{ at: s.water_marks.low, name: "low" }] : []),
                ...(s.water_marks?.high !== undefined ? [{ at: s.water_marks.high, name: "high" }] : []),
              ];
              return (
                <article class="site card" key={s.name} data-testid={`site-${s.name}`}>
                  <h3>{s.name}</h3>
                  <Gauge fraction={use.fraction} marks={marks} label={`${s.name} capacity in use`} level={use.level} />
                  <p>
                    <strong>{formatPercent(use.fraction)}</strong> in use{use.by ? ` (${RESOURCE[use.by]})` : ""}
                    {use.level === "high" ? <span class="badge bad"> over high water</span> : null}
                    {use.level === "low" ? <span class="badge"> under low water</span> : null}
                  </p>
                  <dl class="facts">
                    <dt>Water marks</dt>
                    <dd>
                      low {formatPercent(s.water_marks?.low)} · high {formatPercent(s.water_marks?.high)}
                    </dd>
                    <dt>vCPU</dt>
                    <dd>
                      {use.used.vcpus} / {use.capacity.vcpus} (×{s.vcpu_overcommit || 1})
                    </dd>
                    <dt>Memory</dt>
                    <dd>
                      {(use.used.memory_mib / 1024).toFixed(1)} / {(use.capacity.memory_mib / 1024).toFixed(1)} GiB
                    </dd>
                    <dt>Disk</dt>
                    <dd>
                      {use.used.disk_gib} / {use.capacity.disk_gib} GiB
                    </dd>
                    <dt>Hosts</dt>
                    <dd>
                      {use.hosts}
                      {use.unreachable ? <span class="badge bad"> {use.unreachable} unreachable</span> : null}
                    </dd>
                    <dt>Price</dt>
                    <dd>
                      {formatMoney(s.price?.vcpu_hour, s.price?.currency)} per vCPU·h,{" "}
                      {formatMoney(s.price?.memory_gib_hour, s.price?.currency)} per GiB·h
                    </dd>
                    <dt>Jurisdictions</dt>
                    <dd>
                      {s.jurisdictions?.length
                        ? s.jurisdictions.map((j) => (
                            <span class="label" key={j}>
                              {j}
                            </span>
                          ))
                        : "none"}
                    </dd>
                  </dl>
                </article>
              );
            })}
          </div>
        )}
      </Section>
      <Section title="Links">
        <ErrorBox message={listErrors.links} what="Links" />
        {!links ? (
          <Loading what="links" />
        ) : links.length === 0 ? (
          <p class="muted">No links.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>Between</th>
                <th>RTT</th>
                <th>Throughput</th>
                <th>Measured</th>
              </tr>
            </thead>
            <tbody>
              {links.map((l) => (
                <tr key={`${l.a}-${l.b}`}>
                  <td>
                    {l.a} ↔ {l.b}
                  </td>
                  <td>
                    {l.rtt_ms.toFixed(1)} ms <span class={`src ${l.rtt_source}`}>{l.rtt_source}</span>
                  </td>
                  <td>
                    {formatMbps(l.mbps)} <span class={`src ${l.mbps_source}`}>{l.mbps_source}</span>
                    {l.mbps_method ? <span class="muted"> by {l.mbps_method}</span> : null}
                  </td>
                  <td>{l.measured_at_ms ? formatTime(l.measured_at_ms) : "never (configured)"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </>
  );
}
