// Audit: every request that changed or tried to change something. who and target are asked
// of the controller; the free text filters what it answered.
import { useEffect, useState } from "preact/hooks";
import type { AuditEntry } from "../api/types";
import { formatTime } from "../logic/format";
import { filterAudit } from "../logic/sort";
import { ErrorBox, Loading, Section } from "./common";
import { errorMessage, useConsole } from "./state";

export function AuditPage() {
  const { api, auditTick } = useConsole();
  const [who, setWho] = useState("");
  const [target, setTarget] = useState("");
  const [max, setMax] = useState(200);
  const [text, setText] = useState("");
  const [query, setQuery] = useState({ who: "", target: "", max: 200 });
  const [entries, setEntries] = useState<AuditEntry[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    api.audit(query).then(
      (a) => {
        if (!live) return;
        setEntries(a);
        setError(null);
      },
      (err) => live && setError(errorMessage(err)),
    );
    return () => {
      live = false;
    };
  }, [query, auditTick]);

  const shown = filterAudit(entries ?? [], text).sort((a, b) => b.seq - a.seq);
  return (
    <Section title="Audit">
      <form
        class="inline-form"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery({ who, target, max });
        }}
      >
        <label>
          Who
          <input name="who" value={who} onInput={(e) => setWho(e.currentTarget.value)} />
        </label>
        <label>
          Target
          <input name="target" value={target} onInput={(e) => setTarget(e.currentTarget.value)} />
        </label>
        <label>
          At most
          <input name="max" type="number" min={1} max={1000} value={max} onInput={(e) => setMax(Number(e.currentTarget.value) || 200)} />
        </label>
        <button type="submit">Search</button>
        <label>
          Filter
          <input name="filter" placeholder="any text" value={text} onInput={(e) => setText(e.currentTarget.value)} />
        </label>
      </form>
      <ErrorBox message={error} what="Audit" />
      {!entries ? (
        <Loading what="the audit log" />
      ) : (
        <table class="audit">
          <thead>
            <tr>
              <th>#</th>
              <th>When</th>
              <th>Who</th>
              <th>Role</th>
              <th>Action</th>
              <th>Target</th>
              <th>Status</th>
              <th>Result</th>
              <th>Reason</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((e) => (
              <tr key={e.seq} class={e.status >= 400 ? "refused" : ""}>
                <td>{e.seq}</td>
                <td>{formatTime(e.at_ms)}</td>
                <td>{e.who}</td>
                <td>{e.role}</td>
                <td>{e.action}</td>
                <td>{e.target}</td>
                <td>{e.status}</td>
                <td>{e.result}</td>
                <td>{e.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {entries && shown.length === 0 ? <p class="muted">No entry matches.</p> : null}
    </Section>
  );
}
