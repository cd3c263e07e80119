// Helpers for the console's browser tests: launching Debian's Chromium through
// playwright-core, signing in, and waiting on conditions (never on fixed sleeps).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export function launch() {
  return chromium.launch({ executablePath: process.env.VANDRA_CHROMIUM || "/usr/bin/chromium", args: CHROMIUM_ARGS });
}

/**
 * Records every value each progress bar shows, as the DOM changes (a MutationObserver, so a
 * value shown for one frame is not missed): window.__seen["web1 to cloud-eu#12"] = [1, 5, ...].
 */
function recordProgress() {
  window.__seen = {};
  const rec = (el) => {
    const panel = el.closest("[data-migration]");
    const key = `${el.getAttribute("aria-label")}#${panel ? panel.getAttribute("data-migration") : "?"}`;
    const v = Number(el.getAttribute("aria-valuenow"));
    const list = (window.__seen[key] ||= []);
    if (list[list.length - 1] !== v) list.push(v);
  };
  const scan = (n) => {
    if (n.nodeType !== 1) return;
    if (n.getAttribute("role") === "progressbar") rec(n);
    n.querySelectorAll('[role="progressbar"]').forEach(rec);
  };
  new MutationObserver((muts) => {
    for (const m of muts) {
      if (m.type === "attributes") scan(m.target);
      else m.addedNodes.forEach(scan);
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["aria-valuenow"] });
}

export async function newConsole(browser, baseUrl) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  await context.addInitScript(recordProgress);
  const page = await context.newPage();
  // Anything the page logs as an error is worth seeing when a step fails.
  page.on("pageerror", (e) => console.error(`  [page error] ${e.message}`));
  page.on("console", (m) => m.type() === "error" && console.error(`  [console] ${m.text()}`));
  await page.goto(baseUrl);
  return { context, page };
}

export function credentials(envName) {
  const v = process.env[envName];
  if (!v || !v.includes(":")) throw new Error(`${envName} must be "user:password"`);
  const i = v.indexOf(":");
  return { user: v.slice(0, i), password: v.slice(i + 1) };
}

export async function signIn(page, { user, password }, role) {
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  const who = page.getByTestId("who");
  await who.waitFor();
  const text = await who.innerText();
  if (!text.includes(user) || !text.includes(role)) throw new Error(`signed in as "${text}", expected ${user} (${role})`);
}

export async function go(page, baseUrl, hash) {
  await page.goto(new URL(hash, baseUrl).toString());
}

/** Waits until @p fn (run in the page with @p arg) returns something truthy, and returns it. */
export async function until(page, what, fn, arg, timeout = 30000) {
  try {
    const h = await page.waitForFunction(fn, arg, { timeout, polling: "raf" });
    return await h.jsonValue();
  } catch (e) {
    throw new Error(`timed out after ${timeout} ms waiting for ${what}${e?.message?.includes("Timeout") ? "" : `: ${e.message}`}`);
  }
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** The values a progress bar showed, as recorded by recordProgress. */
export async function seen(page, label, id) {
  return page.evaluate(([l, i]) => window.__seen[`${l}#${i}`] ?? [], [label, String(id)]);
}

/** Fails unless @p values rose monotonically, passed through (0, 100) and ended at @p last. */
export function checkRun(values, last, who) {
  check(values.length > 0, `${who}: the progress bar never showed a value`);
  for (let i = 1; i < values.length; i++) check(values[i] >= values[i - 1], `${who}: the bar went back from ${values[i - 1]} to ${values[i]} (${values.join(", ")})`);
  check(values.some((v) => v > 0 && v < 100), `${who}: the bar jumped without an intermediate value (${values.join(", ")})`);
  if (last !== undefined) check(values[values.length - 1] === last, `${who}: the bar ended at ${values[values.length - 1]}, not ${last} (${values.join(", ")})`);
}

export function screenshots() {
  const dir = process.env.VANDRA_CONSOLE_SCREENSHOTS;
  if (dir) mkdirSync(dir, { recursive: true });
  return async (page, name) => {
    if (dir) await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
  };
}
