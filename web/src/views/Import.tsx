// Import: upload an .ova with a progress bar, then see what the package holds (each virtual
// system's SLA) and where placement would put it, or why nowhere, before importing it.
import { useEffect, useState } from "preact/hooks";
import type { ImportedVm, PackageDetail, Upload } from "../api/types";
import { formatBytes } from "../logic/format";
import { packageName, placementOf } from "../logic/packages";
import { slaSummary } from "../logic/sla";
import { ErrorBox, Section } from "./common";
import { errorMessage, useConsole } from "./state";

function UploadForm({ onUploaded }: { onUploaded: (name: string) => void }) {
  const { api, canChange } = useConsole();
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState("");
  const [sent, setSent] = useState<{ loaded: number; total: number } | null>(null);
  const [abort, setAbort] = useState<(() => void) | null>(null);
  const [error, setError] = useState<string | null>(null);

  const start = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setError(null);
    setSent({ loaded: 0, total: file.size });
    const up = api.upload(name, file, (loaded, total) => setSent({ loaded, total }));
    setAbort(() => up.abort);
    try {
      const done: Upload = await up.promise;
      onUploaded(done.name || name);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setAbort(null);
    }
  };
  const pct = sent && sent.total > 0 ? Math.floor((sent.loaded / sent.total) * 100) : 0;
  return (
    <form onSubmit={start} class="upload">
      <label>
        Package (.ova)
        <input
          type="file"
          accept=".ova,application/x-tar"
          disabled={!canChange}
          onChange={(e) => {
            const f = e.currentTarget.files?.[0] ?? null;
            setFile(f);
            if (f) setName(packageName(f.name));
          }}
        />
      </label>
      <label>
        Name
        <input value={name} disabled={!canChange} pattern="[A-Za-z0-9_][A-Za-z0-9._\-]{0,63}" required onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <div class="actions">
        <button type="submit" class="primary" disabled={!canChange || !file || !name || abort !== null}>
          Upload
        </button>
        {abort ? (
          <button type="button" onClick={() => abort()}>
            Stop upload
          </button>
        ) : null}
      </div>
      {sent ? (
        <div class="bar running" role="progressbar" aria-label="Upload" aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct}>
          <div class="bar-fill" style={{ width: `${pct}%` }} />
          <span class="bar-text">
            {formatBytes(sent.loaded)} of {formatBytes(sent.total)} ({pct} %)
          </span>
        </div>
      ) : null}
      <ErrorBox message={error} what="Upload failed" />
    </form>
  );
}

function PackageView({ name }: { name: string }) {
  const { api, canChange, lists, refresh } = useConsole();
  const [pkg, setPkg] = useState<PackageDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [id, setId] = useState("");
  const [site, setSite] = useState("");
  const [start, setStart] = useState(true);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<ImportedVm | null>(null);
  const [importError, setImportError] = useState<string | null>(null);

  useEffect(() => {
    setPkg(null);
    setError(null);
    setDone(null);
    api.packageDetail(name).then(
      (p) => {
        setPkg(p);
        setId(p.vms[0]?.name ?? "");
      },
      (err) => setError(errorMessage(err)),
    );
  }, [name]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setImportError(null);
    try {
      setDone(await api.importVm({ id, package: name, ...(site ? { site } : {}), start }));
      refresh("vms");
    } catch (err) {
      setImportError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  if (error) return <ErrorBox message={error} what={`Package ${name}`} />;
  if (!pkg) return <p class="muted">Reading {name}…</p>;
  const placement = placementOf(pkg);
  return (
    <div data-testid="package">
      <p>
        <strong>{pkg.name}</strong> · {formatBytes(pkg.size)} · signature <span class="label">{pkg.signature}</span>
      </p>
      <table>
        <thead>
          <tr>
            <th>Virtual system</th>
            <th>Size</th>
            <th>SLA</th>
          </tr>
        </thead>
        <tbody>
          {pkg.vms.map((v) => (
            <tr key={v.vs}>
              <td>{v.name}</td>
              <td>
                {v.vcpus} vCPU · {(v.memory_mib / 1024).toFixed(1)} GiB · {v.disk_gib} GiB
              </td>
              <td>{slaSummary(v.sla)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p data-testid="placement">
        {placement.ok ? (
          <>
            Placement would put it at <strong>{placement.site}</strong> on {placement.host} ({placement.cost})
          </>
        ) : (
          <span class="error-text">Nowhere: {placement.why}</span>
        )}
      </p>
      <form onSubmit={submit} class="inline-form">
        <label>
          VM id
          <input value={id} required disabled={!canChange} onInput={(e) => setId(e.currentTarget.value)} />
        </label>
        <label>
          Site
          <select value={site} disabled={!canChange} onChange={(e) => setSite(e.currentTarget.value)}>
            <option value="">where placement decides</option>
            {(lists.sites ?? []).map((s) => (
              <option key={s.name} value={s.name}>
                {s.name}
              </option>
            ))}
          </select>
        </label>
        <label class="check">
          <input type="checkbox" checked={start} disabled={!canChange} onChange={(e) => setStart(e.currentTarget.checked)} />
          Start it
        </label>
        <button type="submit" class="primary" disabled={!canChange || busy || !id}>
          Import
        </button>
      </form>
      <ErrorBox message={importError} what="Import refused" />
      {done ? (
        <p class="ok-text" role="status">
          Imported {done.vm.name} at {done.placement.site} on {done.placement.host} ({done.vm.state}).
        </p>
      ) : null}
    </div>
  );
}

export function ImportPage() {
  const { api } = useConsole();
  const [selected, setSelected] = useState<string | null>(null);
  const [uploads, setUploads] = useState<Upload[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const loadUploads = () => api.packages().then((r) => setUploads(r.packages), (err) => setError(errorMessage(err)));
  useEffect(() => void loadUploads(), []);
  return (
    <>
      <Section title="Upload a package">
        <UploadForm
          onUploaded={(n) => {
            setSelected(n);
            void loadUploads();
          }}
        />
      </Section>
      <Section title="Uploaded packages">
        <ErrorBox message={error} what="Packages" />
        {uploads?.length ? (
          <ul class="packages">
            {uploads.map((u) => (
              <li key={u.name}>
                <button class={selected === u.name ? "link active" : "link"} onClick={() => setSelected(u.name)}>
                  {u.name}
                </button>{" "}
                <span class="muted">{formatBytes(u.size)}</span>
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">{uploads ? "None yet." : "Loading…"}</p>
        )}
        {selected ? <PackageView name={selected} /> : null}
      </Section>
    </>
  );
}
