#!/usr/bin/env node
// The console's browser tests (node:test + playwright-core + Debian's Chromium).
//
//   node web/e2e/run.mjs                against a real controller; reads VANDRA_CONSOLE_URL,
//                                       _OPERATOR, _VIEWER ("user:password"), _VM, _TARGET,
//                                       _FORBIDDEN, _ORIGIN (default dc), _SCREENSHOTS
//   node web/e2e/run.mjs --self-check   serves web/dist with a stand-in API on 127.0.0.1,
//                                       checks the sign-in page renders, then runs the same
//                                       scenarios against the stand-in
//   node web/e2e/run.mjs --self-check=basic   only the sign-in page
//
// Exits non-zero on any failure, with the step and what was expected.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { check, go, launch, newConsole, signIn, until } from "./lib.mjs";
import { scenarios } from "./scenarios.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const arg = process.argv.find((a) => a.startsWith("--self-check"));
const selfCheck = arg !== undefined;
const basicOnly = arg === "--self-check=basic";

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(2);
}

let mock = null;
if (selfCheck) {
  const dist = join(here, "..", "dist");
  if (!existsSync(join(dist, "index.html"))) fail(`no built app in ${dist}: run "npm run build" in web/ first`);
  const { startMock } = await import("./mock-controller.mjs");
  mock = await startMock(dist);
  // The stand-in's users and inventory (mock-controller.mjs); screenshots only when asked.
  Object.assign(process.env, {
    VANDRA_CONSOLE_URL: mock.url,
    VANDRA_CONSOLE_OPERATOR: "op:op-pass",
    VANDRA_CONSOLE_VIEWER: "view:view-pass",
    VANDRA_CONSOLE_VM: "web1",
    VANDRA_CONSOLE_TARGET: "cloud-eu",
    VANDRA_CONSOLE_FORBIDDEN: "cloud-us",
    VANDRA_CONSOLE_ORIGIN: "dc",
    VANDRA_CONSOLE_MOVE_TIMEOUT_MS: "60000",
  });
  console.log(`e2e self-check: the built app and a stand-in API at ${mock.url}`);

  test("self-check: Chromium renders the built app's sign-in page and shows a refused sign-in", async () => {
    const browser = await launch();
    try {
      const page = await browser.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(mock.url);
      const form = page.getByRole("form", { name: "Sign in" });
      await form.waitFor({ timeout: 15000 });
      await page.getByLabel("User").fill("op");
      await page.getByLabel("Password").fill("wrong");
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      const alert = page.getByRole("alert");
      await alert.waitFor({ timeout: 15000 });
      const text = await alert.innerText();
      check(text.includes("wrong name or password"), `the refusal is not shown: "${text}"`);
      check(errors.length === 0, `errors in the page: ${errors.join("; ")}`);
    } finally {
      await browser.close();
    }
  });
}

if (!basicOnly) {
  const need = ["VANDRA_CONSOLE_URL", "VANDRA_CONSOLE_OPERATOR", "VANDRA_CONSOLE_VIEWER", "VANDRA_CONSOLE_VM", "VANDRA_CONSOLE_TARGET", "VANDRA_CONSOLE_FORBIDDEN"];
  const missing = need.filter((k) => !process.env[k]);
  if (missing.length) fail(`missing ${missing.join(", ")} (or use --self-check)`);
  const e = process.env;
  const url = e.VANDRA_CONSOLE_URL.endsWith("/") ? e.VANDRA_CONSOLE_URL : e.VANDRA_CONSOLE_URL + "/";
  scenarios(test, { url, vm: e.VANDRA_CONSOLE_VM, target: e.VANDRA_CONSOLE_TARGET, forbidden: e.VANDRA_CONSOLE_FORBIDDEN, origin: e.VANDRA_CONSOLE_ORIGIN || "dc" });
}

// The import path, only against the stand-in (the real scenarios leave the inventory alone).
if (mock && !basicOnly) {
  test("self-check: upload an .ova with progress, see its SLA and placement, import it", async () => {
    const browser = await launch();
    try {
      const { page } = await newConsole(browser, mock.url);
      await signIn(page, { user: "op", password: "op-pass" }, "operator");
      await go(page, mock.url, "#/import");
      const size = 3 * 1024 * 1024;
      await page.getByLabel("Package (.ova)").setInputFiles({ name: "app one.ova", mimeType: "application/x-tar", buffer: Buffer.alloc(size, 7) });
      check((await page.getByLabel("Name").inputValue()) === "app_one.ova", "the package name was not made from the file name");
      await page.getByRole("button", { name: "Upload", exact: true }).click();
      await until(page, "the upload bar at 100", () => document.querySelector('[role="progressbar"][aria-label="Upload"]')?.getAttribute("aria-valuenow") === "100", null);
      const pkg = page.getByTestId("package");
      await pkg.waitFor();
      const text = await pkg.innerText();
      check(text.includes("3.00 MiB") && text.includes("in US") && text.includes("downtime ≤ 300 ms"), `the package's size and SLA are not shown: ${text}`);
      check((await page.getByTestId("placement").innerText()).includes("cloud-us"), "the placement is not shown");
      await page.getByLabel("VM id").fill("app1");
      await page.getByRole("button", { name: "Import", exact: true }).click();
      await page.getByRole("status").filter({ hasText: "Imported app1 at cloud-us" }).waitFor();
      await go(page, mock.url, "#/vms");
      await page.locator('tr[data-vm="app1"]').waitFor();
    } finally {
      await browser.close();
    }
  });
}

if (mock) test("stop the stand-in", () => mock.close());
