// The one way the console talks to the controller: same-origin fetch with the session
// cookie, the CSRF token on every change, and every non-2xx answer turned into an ApiError
// carrying the controller's {"error": {code, message}} so views can show the message.
import type {
  ApiErrorBody,
  AuditEntry,
  Host,
  ImportedVm,
  ImportRequest,
  Link,
  Migration,
  MigrationDetail,
  MigrationReport,
  Mobility,
  PackageDetail,
  Preflight,
  Sample,
  Session,
  Site,
  SlaStatus,
  Upload,
  Vm,
} from "./types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function isMutating(method: string): boolean {
  return MUTATING.has(method.toUpperCase());
}

/** Reads an error answer: the API's JSON error when there is one, else the status line. */
export async function errorFrom(res: Response): Promise<ApiError> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    // the body could not be read: the status alone says what happened
  }
  return errorFromText(res.status, res.statusText, text);
}

export function errorFromText(status: number, statusText: string, text: string): ApiError {
  try {
    const body = JSON.parse(text) as Partial<ApiErrorBody>;
    if (body && body.error && typeof body.error.message === "string") {
      return new ApiError(status, String(body.error.code ?? "error"), body.error.message);
    }
  } catch {
    // not JSON: fall through
  }
  const detail = text.trim().slice(0, 200);
  const line = `HTTP ${status}${statusText ? " " + statusText : ""}`;
  return new ApiError(status, "http_" + status, detail ? `${line}: ${detail}` : line);
}

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** Minimal XMLHttpRequest surface the upload needs (a fake one in tests). */
export interface XhrLike {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  send(body: Blob | File): void;
  abort(): void;
  withCredentials: boolean;
  status: number;
  statusText: string;
  responseText: string;
  upload: { onprogress: ((e: { loaded: number; total: number; lengthComputable: boolean }) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}

export interface ClientOptions {
  fetch?: FetchLike;
  xhr?: () => XhrLike;
  /** Called when the controller answers 401 to anything but the session itself. */
  onUnauthorized?: () => void;
}

const enc = encodeURIComponent;

export class ApiClient {
  private csrf: string | null = null;
  private readonly doFetch: FetchLike;
  private readonly newXhr: () => XhrLike;
  onUnauthorized: (() => void) | undefined;

  constructor(opts: ClientOptions = {}) {
    this.doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
    this.newXhr = opts.xhr ?? (() => new XMLHttpRequest() as unknown as XhrLike);
    this.onUnauthorized = opts.onUnauthorized;
  }

  /** The token lives only here, in memory: never in storage or a URL. */
  setCsrf(token: string | null): void {
    this.csrf = token;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    const init: RequestInit = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (isMutating(method) && this.csrf) headers["X-CSRF-Token"] = this.csrf;
    let res: Response;
    try {
      res = await this.doFetch(path, init);
    } catch (e) {
      throw new ApiError(0, "network", `cannot reach the controller: ${(e as Error).message ?? e}`);
    }
    if (!res.ok) {
      const err = await errorFrom(res);
      if (res.status === 401 && !path.startsWith("/v1/session")) this.onUnauthorized?.();
      throw err;
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(res.status, "bad_json", `the controller's answer to ${path} is not JSON`);
    }
  }

  // Session
  getSession = () => this.request<Session>("GET", "/v1/session");
  async signIn(user: string, password: string): Promise<Session> {
    const s = await this.request<Session>("POST", "/v1/session", { user, password });
    this.setCsrf(s.csrf);
    return s;
  }
  async signOut(): Promise<void> {
    try {
      await this.request<void>("DELETE", "/v1/session");
    } finally {
      this.setCsrf(null);
    }
  }

  // Inventory
  sites = () => this.request<{ sites: Site[] }>("GET", "/v1/sites").then((r) => r.sites);
  hosts = () => this.request<{ hosts: Host[] }>("GET", "/v1/hosts").then((r) => r.hosts);
  links = () => this.request<{ links: Link[] }>("GET", "/v1/links").then((r) => r.links);
  vms = () => this.request<{ vms: Vm[] }>("GET", "/v1/vms").then((r) => r.vms);
  sla = () => this.request<SlaStatus>("GET", "/v1/sla");
  preflight = (vm: string, to: string) =>
    this.request<Preflight>("GET", `/v1/vms/${enc(vm)}/preflight?to=${enc(to)}`);
  startVm = (vm: string) => this.request<unknown>("POST", `/v1/vms/${enc(vm)}/start`);
  stopVm = (vm: string) => this.request<unknown>("POST", `/v1/vms/${enc(vm)}/stop`);

  // Migrations. The body's reason is free text (maxLength 500); the record's reason enum
  // (operator, wander, ...) is set by the controller.
  migrate = (vm: string, to: string) =>
    this.request<Migration>("POST", `/v1/vms/${enc(vm)}/migrate`, { to, reason: "console" });
  cancel = (id: number) => this.request<Migration>("POST", `/v1/migrations/${id}/cancel`, { reason: "console" });
  migrations = (max = 200) =>
    this.request<{ migrations: Migration[] }>("GET", `/v1/migrations?max=${max}`).then((r) => r.migrations);
  migration = (id: number) =>
    this.request<MigrationDetail>("GET", `/v1/migrations/${id}`).then((m) => ({ ...m, report: agentReport(m.report) }));
  samples = (id: number) =>
    this.request<{ samples: Sample[] }>("GET", `/v1/migrations/${id}/samples`).then((r) => r.samples);

  // Mobility and audit
  mobility = () => this.request<Mobility>("GET", "/v1/mobility");
  pauseMobility = () => this.request<{ paused: boolean }>("POST", "/v1/mobility/pause");
  resumeMobility = () => this.request<{ paused: boolean }>("POST", "/v1/mobility/resume");
  audit(q: { who?: string; target?: string; max?: number }): Promise<AuditEntry[]> {
    const p = new URLSearchParams();
    if (q.who) p.set("who", q.who);
    if (q.target) p.set("target", q.target);
    p.set("max", String(q.max ?? 200));
    return this.request<{ audit: AuditEntry[] }>("GET", `/v1/audit?${p}`).then((r) => r.audit);
  }

  // Packages
  packages = () =>
    this.request<{ packages: Upload[]; max_upload_bytes: number; available_bytes?: number }>("GET", "/v1/packages");
  packageDetail = (name: string) => this.request<PackageDetail>("GET", `/v1/packages/${enc(name)}`);
  importVm = (req: ImportRequest) => this.request<ImportedVm>("POST", "/v1/vms", req);

  /** PUT the raw file; XMLHttpRequest because fetch reports no upload progress. */
  upload(name: string, file: Blob, onProgress: (loaded: number, total: number) => void) {
    const xhr = this.newXhr();
    const promise = new Promise<Upload>((resolve, reject) => {
      xhr.open("PUT", `/v1/packages/${enc(name)}`);
      xhr.withCredentials = true;
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      if (this.csrf) xhr.setRequestHeader("X-CSRF-Token", this.csrf);
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            resolve(JSON.parse(xhr.responseText) as Upload);
          } catch {
            resolve({ name, size: file.size, sha256: null });
          }
        } else {
          if (xhr.status === 401) this.onUnauthorized?.();
          reject(errorFromText(xhr.status, xhr.statusText, xhr.responseText));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, "network", "the upload failed: connection lost"));
      xhr.onabort = () => reject(new ApiError(0, "aborted", "the upload was cancelled"));
      xhr.send(file);
    });
    return { promise, abort: () => xhr.abort() };
  }
}

/**
 * The controller keeps the source agent's whole migration record as a migration's `report`;
 * the report proper (total_s, wan_bytes, phase_s, ...) is its `report` member.
 */
export function agentReport(r: MigrationReport | null | undefined): MigrationReport | null {
  if (!r) return null;
  const inner = (r as { report?: unknown }).report;
  return inner && typeof inner === "object" && !Array.isArray(inner) ? (inner as MigrationReport) : r;
}
