// A stand-in for the controller, for the e2e script's --self-check only: serves web/dist and
// a small in-memory imitation of the /v1 API of docs/console/api.md (sessions with CSRF,
// preflight, migrations that advance through their phases, cancel, samples, the SSE
// stream), over plain HTTP on 127.0.0.1. It checks the browser side, not the controller.
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };
const USERS = { op: ["op-pass", "operator"], op2: ["op2-pass", "operator"], view: ["view-pass", "viewer"] };
const JUR = { dc: ["EU"], "cloud-eu": ["EU"], "cloud-us": ["US"] };
const TICK_MS = 250;
const PHASES = [["preflight", 1], ["prepare_target", 1], ["mirror_disks", 8], ["precopy_ram", 8], ["switchover", 1], ["confirm", 1]];

export async function startMock(distDir) {
  const sessions = new Map();
  const streams = new Set();
  const audit = [];
  const migrations = [];
  const site = (name, price) => ({ name, jurisdictions: JUR[name], vcpu_overcommit: 2, price: { currency: "EUR", vcpu_hour: price, memory_gib_hour: price / 4 }, water_marks: { high: 0.8, low: 0.2 }, networks: ["lan"], default_network: "lan" });
  const sites = [site("dc", 0.02), site("cloud-eu", 0.03), site("cloud-us", 0.025)];
  const hosts = sites.map((s) => ({ name: `${s.name}-h1`, site: s.name, endpoint: "127.0.0.1:0", capacity: { vcpus: 8, memory_mib: 16384, disk_gib: 200 }, used: { vcpus: s.name === "dc" ? 2 : 0, memory_mib: s.name === "dc" ? 2048 : 0, disk_gib: s.name === "dc" ? 10 : 0 }, reachable: true, last_seen_ms: Date.now(), last_error: "" }));
  const link = (a, b, rtt) => ({ a, b, rtt_ms: rtt, mbps: 40, measured_at_ms: Date.now(), rtt_source: "measured", mbps_source: "configured", mbps_method: "", configured_rtt_ms: rtt, configured_mbps: 40, rtt_measured_at_ms: Date.now(), mbps_measured_at_ms: 0 });
  const links = [link("dc", "cloud-eu", 20), link("dc", "cloud-us", 90), link("cloud-eu", "cloud-us", 80)];
  const vms = [{ name: "web1", site: "dc", host: "dc-h1", home_site: "dc", state: "running", vcpus: 2, memory_mib: 2048, disk_gib: 10, sla: { downtime_budget_ms: 500, jurisdictions: ["EU"], mobility: "on-request" }, networks: ["lan"], placed_at_ms: Date.now(), last_moved_at_ms: 0, dirty_rate_mbps: 2 }];
  const packages = new Map();
  let paused = false;

  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(body === undefined ? "" : JSON.stringify(body));
  };
  const fail = (res, status, code, message) => send(res, status, { error: { code, message } });
  const broadcast = (event, data) => {
    for (const s of streams) s.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const refusals = (vm, to) => {
    const r = [];
    if (vm.state !== "running") r.push({ code: "not_running", clause: `${vm.name} is ${vm.state}` });
    const allowed = vm.sla.jurisdictions ?? [];
    if (allowed.length && !JUR[to].some((j) => allowed.includes(j))) r.push({ code: "sla_jurisdiction", clause: `Jurisdictions: ${to} is in ${JUR[to].join(",")}, the SLA allows ${allowed.join(",")}` });
    return r;
  };
  const progressOf = (m) => ({ ...m.record, phase: m.phase, cancellable: m.cancellable, progress: m.record.state === "running" ? m.progress : null, estimate: m.estimate, report: m.report });

  function advance(m) {
    const rec = m.record;
    if (rec.state !== "running") return;
    m.ticks++;
    const p = m.progress;
    p.elapsed_s = m.ticks * TICK_MS / 1000;
    if (m.phase === "rolling_back") {
      if (m.ticks - m.cancelAt >= 2) return finish(m, "cancelled", "rolled_back");
    } else {
      const [, len] = PHASES[m.step];
      m.inStep++;
      if (m.phase === "mirror_disks") p.disk_copied = Math.round(p.disk_total * m.inStep / len);
      if (m.phase === "precopy_ram") { p.ram_transferred = Math.round(p.ram_total * m.inStep / len); p.ram_remaining = p.ram_total - p.ram_transferred; }
      p.wan_bytes += 1_250_000;
      if (m.inStep >= len) {
        m.step++; m.inStep = 0;
        if (m.step >= PHASES.length) return finish(m, "done", "done");
        m.phase = PHASES[m.step][0];
        if (m.phase === "switchover") m.cancellable = false;
      }
    }
    m.samples.push({ t_s: p.elapsed_s, mbps: 38 + (m.ticks % 3), dirty_rate_bps: 250_000, wan_bytes: p.wan_bytes, phase: m.phase });
    broadcast("migration", progressOf(m));
  }

  function finish(m, state, phase) {
    clearInterval(m.timer);
    Object.assign(m.record, { state, finished_at_ms: Date.now() });
    m.phase = phase; m.cancellable = false;
    if (state === "done") {
      Object.assign(m.record, { downtime_ms: 120, within_budget: true });
      const vm = vms.find((v) => v.name === m.record.vm);
      Object.assign(vm, { site: m.record.to, host: `${m.record.to}-h1`, last_moved_at_ms: Date.now() });
    }
    m.report = { total_s: m.progress.elapsed_s, wan_bytes: m.progress.wan_bytes, phase_s: { preflight: 0.25, prepare_target: 0.25, mirror_disks: 2, precopy_ram: 2, switchover: 0.25, confirm: 0.25 }, interruption_by: "lan_silence" };
    vms.find((v) => v.name === m.record.vm).state = "running";
    broadcast("migration", progressOf(m));
    broadcast("changed", { what: "vms" });
    broadcast("changed", { what: "migrations" });
  }

  const readBody = (req) => new Promise((resolve) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
  });

  async function api(req, res, url, who) {
    const path = url.pathname;
    const method = req.method;
    const json = async () => { try { return JSON.parse((await readBody(req)).toString() || "{}"); } catch { return null; } };
    if (path === "/v1/session") {
      if (method === "POST") {
        const b = await json();
        const u = USERS[b?.user];
        if (!u || u[0] !== b.password) return fail(res, 401, "unauthorized", "wrong name or password");
        const token = randomBytes(16).toString("hex");
        const s = { user: b.user, role: u[1], csrf: randomBytes(16).toString("hex"), expires_at_ms: Date.now() + 3600e3 };
        sessions.set(token, s);
        return send(res, 200, s, { "Set-Cookie": `vandra_session=${token}; HttpOnly; SameSite=Strict; Path=/` });
      }
      if (!who) return fail(res, 401, "unauthorized", "not signed in");
      if (method === "GET") return send(res, 200, who);
    }
    if (!who) return fail(res, 401, "unauthorized", "not signed in");
    if (method !== "GET") {
      if (req.headers["x-csrf-token"] !== who.csrf) return fail(res, 403, "csrf", "missing or wrong X-CSRF-Token");
      if (who.role !== "operator" && path !== "/v1/session") return fail(res, 403, "forbidden", "viewers change nothing");
      audit.push({ seq: audit.length + 1, at_ms: Date.now(), who: who.user, role: who.role, action: `${method} ${path}`, target: path.split("/")[3] ?? "", status: 200, result: "ok", reason: "console" });
      broadcast("changed", { what: "audit" });
    }
    if (path === "/v1/session" && method === "DELETE") { sessions.delete(cookieOf(req)); return send(res, 204); }
    if (path === "/v1/stream") {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
      res.write(`event: hello\ndata: ${JSON.stringify({ at_ms: Date.now() })}\n\n`);
      streams.add(res);
      req.on("close", () => streams.delete(res));
      return;
    }
    let m;
    if (path === "/v1/sites") return send(res, 200, { sites });
    if (path === "/v1/hosts") return send(res, 200, { hosts });
    if (path === "/v1/links") return send(res, 200, { links });
    if (path === "/v1/vms" && method === "GET") return send(res, 200, { vms });
    if (path === "/v1/sla") {
      const v = vms.map((vm) => { const r = refusals({ ...vm, state: "running" }, vm.site); return { vm: vm.name, site: vm.site, ok: r.length === 0, violations: r.map((x) => x.clause), link_violations: [] }; });
      return send(res, 200, { vms: v, violations: v.filter((x) => !x.ok).length });
    }
    if (path === "/v1/mobility") return send(res, 200, { paused, plan: { moves: [], held: [], sites: [] } });
    if (path === "/v1/mobility/pause" || path === "/v1/mobility/resume") { paused = path.endsWith("pause"); broadcast("changed", { what: "mobility" }); return send(res, 200, { paused }); }
    if (path === "/v1/audit") return send(res, 200, { audit: audit.filter((e) => (!url.searchParams.get("who") || e.who === url.searchParams.get("who"))).slice(-(Number(url.searchParams.get("max")) || 200)) });
    if (path === "/v1/packages") return send(res, 200, { packages: [...packages.values()], max_upload_bytes: 1 << 30, available_bytes: 1 << 30 });
    if ((m = path.match(/^\/v1\/packages\/([^/]+)$/))) {
      const name = decodeURIComponent(m[1]);
      if (method === "PUT") {
        const size = (await readBody(req)).length;
        if (req.headers["content-type"] !== "application/octet-stream") return fail(res, 400, "bad_type", "send the raw .ova");
        packages.set(name, { name, size, sha256: null });
        return send(res, 201, packages.get(name));
      }
      const up = packages.get(name);
      if (!up) return fail(res, 404, "not_found", `no package ${name}`);
      const sla = { downtime_budget_ms: 300, jurisdictions: ["US"] };
      return send(res, 200, { ...up, signature: "unsigned", vms: [{ vs: "vs1", name: "app1", vcpus: 1, memory_mib: 1024, disk_gib: 4, networks: ["lan"], sla }], placement: { site: "cloud-us", host: "cloud-us-h1", cost_per_hour: 0.03, networks: { lan: "lan" } } });
    }
    if (path === "/v1/vms" && method === "POST") {
      const b = await json();
      if (!b?.id || !packages.has(b.package)) return fail(res, 400, "bad_request", "id and an uploaded package are needed");
      const vm = { name: b.id, site: b.site || "cloud-us", host: `${b.site || "cloud-us"}-h1`, home_site: b.site || "cloud-us", state: b.start ? "running" : "stopped", vcpus: 1, memory_mib: 1024, disk_gib: 4, sla: { downtime_budget_ms: 300, jurisdictions: ["US"] }, networks: ["lan"], placed_at_ms: Date.now(), last_moved_at_ms: 0, dirty_rate_mbps: null };
      vms.push(vm);
      broadcast("changed", { what: "vms" });
      return send(res, 201, { vm, placement: { site: vm.site, host: vm.host, cost_per_hour: 0.03, networks: { lan: "lan" } } });
    }
    if (path === "/v1/migrations") return send(res, 200, { migrations: [...migrations].reverse().map((m) => m.record) });
    if ((m = path.match(/^\/v1\/vms\/([^/]+)\/preflight$/))) {
      const vm = vms.find((v) => v.name === decodeURIComponent(m[1]));
      const to = url.searchParams.get("to");
      if (!vm || !JUR[to]) return fail(res, 404, "not_found", "no such VM or site");
      const r = refusals(vm, to);
      if (migrations.some((x) => x.record.vm === vm.name && x.record.state === "running")) r.push({ code: "busy", clause: `${vm.name} is moving` });
      return send(res, 200, { vm: vm.name, to, ok: r.length === 0, refusals: r, estimate: { duration_s: 6, interruption_ms: 150, rtt_ms: 20, mbps: 40 } });
    }
    if ((m = path.match(/^\/v1\/vms\/([^/]+)\/migrate$/)) && method === "POST") {
      const vm = vms.find((v) => v.name === decodeURIComponent(m[1]));
      const b = await json();
      if (!vm || !JUR[b?.to]) return fail(res, 404, "not_found", "no such VM or site");
      const r = refusals(vm, b.to);
      if (r.length) return fail(res, 409, r[0].code, r[0].clause);
      const record = { id: migrations.length + 1, vm: vm.name, from: vm.site, to: b.to, agent_migration_id: "m", state: "running", reason: "operator", why: b.reason ?? "", requested_by: who.user, epoch: 1, started_at_ms: Date.now(), finished_at_ms: 0, downtime_ms: null, budget_ms: vm.sla.downtime_budget_ms ?? null, within_budget: null, error: "", networks: {} };
      const mig = { record, phase: "preflight", cancellable: true, step: 0, inStep: 0, ticks: 0, estimate: { duration_s: 6, interruption_ms: 150 }, report: null, samples: [], progress: { elapsed_s: 0, wan_bytes: 0, disk_copied: 0, disk_total: 10 * 1024 ** 2, ram_transferred: 0, ram_remaining: 2 * 1024 ** 3, ram_total: 2 * 1024 ** 3, dirty_rate_bps: 250000, mbps: 38, expected_downtime_ms: 140 } };
      vm.state = "migrating";
      migrations.push(mig);
      mig.timer = setInterval(() => advance(mig), TICK_MS);
      broadcast("changed", { what: "vms" });
      return send(res, 202, record);
    }
    if ((m = path.match(/^\/v1\/migrations\/(\d+)(\/cancel|\/samples)?$/))) {
      const mig = migrations[Number(m[1]) - 1];
      if (!mig) return fail(res, 404, "not_found", "no such migration");
      if (m[2] === "/samples") return send(res, 200, { samples: mig.samples });
      if (m[2] === "/cancel") {
        if (!mig.cancellable) return fail(res, 409, "too_late", "past the switchover or ended");
        mig.cancellable = false; mig.phase = "rolling_back"; mig.cancelAt = mig.ticks;
        broadcast("migration", progressOf(mig));
        return send(res, 202, mig.record);
      }
      return send(res, 200, { ...mig.record, report: mig.report, live: mig.record.state === "running" ? { phase: mig.phase, progress: mig.progress } : null });
    }
    return fail(res, 404, "not_found", `no route ${method} ${path}`);
  }

  const cookieOf = (req) => /(?:^|;\s*)vandra_session=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    try {
      if (url.pathname.startsWith("/v1/")) return await api(req, res, url, sessions.get(cookieOf(req)));
      const rel = url.pathname === "/" ? "index.html" : normalize(url.pathname).replace(/^[/\\]+/, "");
      if (rel.startsWith("..")) return fail(res, 400, "bad_path", "bad path");
      const body = await readFile(join(distDir, rel));
      // A strict policy, as the controller may send: the app needs no inline script or style.
      res.writeHead(200, { "Content-Type": TYPES[extname(rel)] ?? "application/octet-stream", "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'" });
      res.end(body);
    } catch (e) {
      if (!res.headersSent) fail(res, e?.code === "ENOENT" ? 404 : 500, "error", String(e?.message ?? e));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise((resolve) => {
      for (const m of migrations) clearInterval(m.timer);
      for (const s of streams) s.end();
      server.closeAllConnections?.();
      server.close(resolve);
    }),
  };
}
