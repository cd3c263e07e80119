// The console's scenarios against a running controller and testbed (or the self-check's
// stand-in), in order; each depends on the ones before it.
import { check, checkRun, credentials, go, launch, newConsole, screenshots, seen, signIn, until } from "./lib.mjs";

const MOVE_MS = Number(process.env.VANDRA_CONSOLE_MOVE_TIMEOUT_MS || 600000);

/** A panel of @p vm moving to @p to, in @p state (running, done, cancelled, failed). */
const panelSel = (vm, to, state, id) => `article[data-testid="migration-panel"][data-vm="${vm}"][data-to="${to}"]${state ? `[data-state="${state}"]` : ""}${id ? `[data-migration="${id}"]` : ""}`;

/** Waits until the VM's row says it runs at @p site. */
async function vmAt(page, vm, site, timeout = 60000) {
  await until(
    page,
    `${vm} shown running at ${site}`,
    ([v, s]) => {
      const row = document.querySelector(`tr[data-vm="${v}"]`);
      return row && row.querySelector('[data-testid="vm-site"]')?.textContent.trim() === s && row.querySelector('[data-testid="vm-state"]')?.textContent.trim() === "running";
    },
    [vm, site],
    timeout,
  );
}

/** The Move button of a VM's row, once the preflight answered (enabled, or with a reason). */
async function moveButton(page, vm, site) {
  const button = page.locator(`tr[data-vm="${vm}"]`).getByRole("button", { name: `Move to ${site}`, exact: true });
  await button.waitFor();
  await until(page, `the preflight of ${vm} to ${site}`, ([v, s]) => {
    const why = document.getElementById(`why-${v}-${s}`);
    return !why || (why.textContent !== "checking…" && !why.textContent.startsWith("moving"));
  }, [vm, site]);
  return button;
}

/** Presses Move to @p to and confirms; returns the id of the migration the panel shows. */
async function startMove(page, vm, to) {
  const button = await moveButton(page, vm, to);
  check(await button.isEnabled(), `Move to ${to} is disabled: ${await button.getAttribute("title")}`);
  await button.click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  const text = await dialog.innerText();
  check(/Expected duration/.test(text) && /Expected interruption/.test(text), `the confirmation shows no estimate: ${text}`);
  await dialog.getByRole("button", { name: "Confirm move", exact: true }).click();
  await dialog.waitFor({ state: "detached" });
  const panel = page.locator(panelSel(vm, to, "running"));
  await panel.first().waitFor();
  return Number(await panel.first().getAttribute("data-migration"));
}

export function scenarios(test, env) {
  const shot = screenshots();
  const s = { failed: false };
  const step = (name, fn) =>
    test(name, { timeout: MOVE_MS * 2 + 120000 }, async (t) => {
      if (s.failed) return t.skip("an earlier scenario failed");
      try {
        await fn();
      } catch (e) {
        s.failed = true;
        // What each open session showed when it failed, beside the other screenshots.
        for (const [who, c] of [["operator", s.op], ["operator2", s.op2], ["viewer", s.viewer]]) {
          if (c && !c.page.isClosed()) await shot(c.page, `failed-${name.slice(0, 1)}-${who}`).catch(() => {});
        }
        throw e;
      }
    });
  const { url, vm, target, forbidden, origin } = env;
  const moveLabel = (to) => `${vm} to ${to}`;

  step("a. operator signs in; the forbidden site's Move button is disabled with its clause", async () => {
    s.browser = await launch();
    s.op = await newConsole(s.browser, url);
    const page = s.op.page;
    await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
    await shot(page, "01-sign-in");
    await signIn(page, credentials("VANDRA_CONSOLE_OPERATOR"), "operator");
    await go(page, url, "#/vms");
    await vmAt(page, vm, origin);
    const refused = await moveButton(page, vm, forbidden);
    check(await refused.isDisabled(), `Move to ${forbidden} is enabled, the SLA forbids it`);
    const why = page.locator(`[id="why-${vm}-${forbidden}"]`);
    const clause = (await why.innerText()).trim();
    check(clause.length > 0 && (await why.isVisible()), `no visible reason next to Move to ${forbidden}`);
    check((await refused.getAttribute("aria-describedby")) === `why-${vm}-${forbidden}`, "the reason is not the button's description");
    check((await refused.getAttribute("title")) === clause, "the button's title is not the clause");
    console.log(`  Move to ${forbidden} refused: ${clause}`);
    await shot(page, "03-vms");
    await go(page, url, "#/sites");
    await page.locator(`[data-testid="site-${origin}"]`).waitFor();
    await page.getByRole("meter").first().waitFor();
    await shot(page, "02-sites");
  });

  step("b. a move can be cancelled during the copy; it ends cancelled and the VM runs on where it was", async () => {
    const page = s.op.page;
    await go(page, url, "#/vms");
    await vmAt(page, vm, origin);
    const id = await startMove(page, vm, target);
    const sel = panelSel(vm, target, null, id);
    const when = await until(page, "the copy under way and cancellable", ([q]) => {
      const p = document.querySelector(q);
      if (!p) return false;
      if (p.dataset.state !== "running") return `ended ${p.dataset.state}`; // fail fast, not after the timeout
      const v = Number(p.querySelector('[role="progressbar"]').getAttribute("aria-valuenow"));
      const cancel = [...p.querySelectorAll("button")].find((b) => b.textContent.trim() === "Cancel");
      return v > 0 && v < 100 && ["mirror_disks", "precopy_ram"].includes(p.dataset.phase) && cancel && !cancel.disabled ? "copying" : false;
    }, [sel], MOVE_MS);
    check(when === "copying", `the move ${when} before it could be cancelled while copying`);
    await page.locator(sel).getByRole("button", { name: "Cancel", exact: true }).click();
    const ended = page.locator(sel);
    await until(page, "the move to end", ([q]) => document.querySelector(q)?.dataset.state !== "running", [sel], MOVE_MS);
    const state = await ended.getAttribute("data-state");
    check(state === "cancelled", `the cancelled move ended ${state}: ${await ended.innerText()}`);
    check((await ended.getByTestId("migration-status").innerText()).trim() === "cancelled", "the panel does not say cancelled");
    const values = await seen(page, moveLabel(target), id);
    for (let i = 1; i < values.length; i++) check(values[i] >= values[i - 1], `the bar went back: ${values.join(", ")}`);
    // Cancelled: the VM runs on where it ran before the move.
    await vmAt(page, vm, origin);
  });

  step("c. a move shows its progress live in two sessions, through intermediate values to done, then its result", async () => {
    s.op2 = await newConsole(s.browser, url);
    await signIn(s.op2.page, credentials("VANDRA_CONSOLE_OPERATOR"), "operator");
    for (const c of [s.op, s.op2]) await go(c.page, url, "#/vms");
    const id = await startMove(s.op.page, vm, target);
    s.firstMove = id;
    const bar = (page) => page.locator(panelSel(vm, target, null, id)).getByRole("progressbar", { name: moveLabel(target), exact: true });
    await Promise.all([bar(s.op.page).waitFor(), bar(s.op2.page).waitFor()]);
    // A screenshot mid-way when the move is slow enough to catch it there.
    const state = await until(s.op.page, "the move to be under way or ended", ([sel]) => {
      const p = document.querySelector(sel);
      const v = Number(p?.querySelector('[role="progressbar"]')?.getAttribute("aria-valuenow"));
      return p && (p.dataset.state !== "running" ? p.dataset.state : v > 0 && v < 100 ? "mid" : false);
    }, [panelSel(vm, target, null, id)], MOVE_MS);
    if (state === "mid") await shot(s.op.page, "04-migration-in-progress");
    for (const c of [s.op, s.op2]) await c.page.locator(panelSel(vm, target, "done", id)).waitFor({ timeout: MOVE_MS });
    for (const [name, c] of [["first session", s.op], ["second session", s.op2]]) {
      checkRun(await seen(c.page, moveLabel(target), id), 100, name);
      check((await bar(c.page).getAttribute("aria-valuenow")) === "100", `${name}: the bar is not at 100 once done`);
    }
    const panel = s.op.page.locator(panelSel(vm, target, "done", id));
    const interruption = panel.getByTestId("result-interruption");
    await until(s.op.page, "the measured interruption", ([sel]) => /\d+(\.\d+)? (ms|s)/.test(document.querySelector(sel)?.querySelector('[data-testid="result-interruption"]')?.textContent ?? ""), [panelSel(vm, target, "done", id)], 60000);
    const budget = (await panel.getByTestId("result-budget").innerText()).trim();
    check(/\d+(\.\d+)? (ms|s)/.test(budget), `the result shows no budget: "${budget}"`);
    console.log(`  move #${id}: interruption ${(await interruption.innerText()).trim()}, budget ${budget}`);
    await shot(s.op.page, "05-result");
    await vmAt(s.op.page, vm, target);
    await s.op2.context.close();
  });

  step("d. the history shows the move with its charts", async () => {
    const page = s.op.page;
    await go(page, url, "#/history");
    const row = page.locator(`tr[data-migration="${s.firstMove}"]`);
    await row.waitFor();
    const text = await row.innerText();
    check(text.includes(vm) && text.includes(target) && text.includes("done"), `history row: ${text}`);
    await page.locator('[data-testid="chart-interruptions"] canvas').first().waitFor();
    await until(page, "the interruption chart to draw points", () => Number(document.querySelector('[data-testid="chart-interruptions"]')?.dataset.points) > 0, null);
    await shot(page, "06-history");
    await row.getByRole("link", { name: String(s.firstMove), exact: true }).click();
    await page.locator('[data-testid="chart-throughput"] canvas').first().waitFor();
    const points = await until(page, "samples in the throughput chart", () => Number(document.querySelector('[data-testid="chart-throughput"]')?.dataset.points) || false, null);
    check(points > 0, "the throughput chart has no sample");
    await page.getByTestId("migration-detail").getByTestId("result").waitFor();
    console.log(`  throughput chart: ${points} samples`);
    await shot(page, "07-migration-detail");
  });

  step("e. a viewer sees everything and can change nothing; the operator moves the VM home meanwhile", async () => {
    s.viewer = await newConsole(s.browser, url);
    const page = s.viewer.page;
    await signIn(page, credentials("VANDRA_CONSOLE_VIEWER"), "viewer");
    await go(page, url, "#/vms");
    await vmAt(page, vm, target);
    const row = page.locator(`tr[data-vm="${vm}"]`);
    const moves = row.getByRole("button", { name: /^Move to / });
    await moves.first().waitFor();
    const n = await moves.count();
    check(n > 0, "no Move button for the viewer");
    for (let i = 0; i < n; i++) check(await moves.nth(i).isDisabled(), `viewer: ${await moves.nth(i).innerText()} is enabled`);
    check(await row.getByRole("button", { name: /^(Start|Stop)$/ }).isDisabled(), "viewer: Start/Stop is enabled");
    await shot(page, "10-viewer");
    // The operator moves it home; the viewer sees the move with Cancel disabled.
    await go(s.op.page, url, "#/vms");
    const id = await startMove(s.op.page, vm, origin);
    const seenRunning = await until(page, "the viewer to see the move", ([q]) => {
      const p = document.querySelector(q);
      if (!p) return false;
      if (p.dataset.state !== "running") return `ended ${p.dataset.state}`;
      const cancel = [...p.querySelectorAll("button")].find((b) => b.textContent.trim() === "Cancel");
      return cancel ? (cancel.disabled ? "disabled" : "enabled") : false;
    }, [panelSel(vm, origin, null, id)], MOVE_MS);
    check(seenRunning === "disabled", `viewer: Cancel during the move home: ${seenRunning}`);
    for (const p of [page, s.op.page]) await p.locator(panelSel(vm, origin, "done", id)).waitFor({ timeout: MOVE_MS });
    await vmAt(page, vm, origin);
    await go(page, url, "#/mobility");
    await page.getByTestId("mobility-state").waitFor();
    for (const name of ["Pause", "Resume"]) check(await page.getByRole("button", { name, exact: true }).isDisabled(), `viewer: ${name} is enabled`);
    await go(page, url, "#/import");
    check(await page.getByRole("button", { name: "Upload", exact: true }).isDisabled(), "viewer: Upload is enabled");
    check(await page.getByLabel("Package (.ova)").isDisabled(), "viewer: the file chooser is enabled");
  });

  step("f. screenshots of mobility and audit; the audit lists the moves", async () => {
    const page = s.op.page;
    await go(page, url, "#/mobility");
    await page.getByTestId("mobility-state").waitFor();
    check(await page.getByRole("button", { name: /^(Pause|Resume)$/ }).first().isEnabled(), "operator: neither Pause nor Resume is enabled");
    await shot(page, "08-mobility");
    await go(page, url, "#/audit");
    await page.locator("table.audit tbody tr").first().waitFor();
    const text = await page.locator("table.audit").innerText();
    check(text.includes(vm), `the audit does not mention ${vm}`);
    // Searched by target on the server, then by any text in the page: only the cancel is left.
    await page.getByLabel("Target").fill(vm);
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByLabel("Filter").fill("/cancel");
    await until(page, "the search to leave the cancel alone", ([v]) => {
      const rows = [...document.querySelectorAll("table.audit tbody tr")];
      return rows.length === 1 && rows[0].textContent.includes("/cancel") && [...rows[0].children].some((td) => td.textContent === v);
    }, [vm]);
    await shot(page, "09-audit");
  });

  // The import path against the real controller, when a package to upload is named.
  const ova = process.env.VANDRA_CONSOLE_OVA;
  if (ova) {
    step("g. an .ova uploaded from the browser shows its SLA and placement, and is imported", async () => {
      const page = s.op.page;
      await go(page, url, "#/import");
      await page.getByLabel("Package (.ova)").setInputFiles(ova);
      const name = await page.getByLabel("Name").inputValue();
      check(name.endsWith(".ova"), `the package name was not made from the file name: ${name}`);
      await page.getByRole("button", { name: "Upload", exact: true }).click();
      await until(page, "the upload bar at 100", () => document.querySelector('[role="progressbar"][aria-label="Upload"]')?.getAttribute("aria-valuenow") === "100", null, MOVE_MS);
      const pkg = page.getByTestId("package");
      await pkg.waitFor({ timeout: MOVE_MS });
      const text = await pkg.innerText();
      check(text.includes("in EU") && /downtime ≤ \d+ ms/.test(text), `the package's SLA is not shown: ${text}`);
      const placement = (await page.getByTestId("placement").innerText()).trim();
      check(!placement.includes(forbidden) && (placement.includes(origin) || placement.includes(target)), `placement: ${placement}`);
      await shot(page, "11-import");
      await page.getByLabel("VM id").fill(`${vm}-copy`);
      // Not started: the copy would take the guest's own address on the stretched LAN.
      await page.getByLabel("Start it").uncheck();
      await page.getByRole("button", { name: "Import", exact: true }).click();
      await page.getByRole("status").filter({ hasText: `Imported ${vm}-copy at ` }).waitFor({ timeout: MOVE_MS });
      await go(page, url, "#/vms");
      await page.locator(`tr[data-vm="${vm}-copy"]`).waitFor({ timeout: 60000 });
    });
  }

  test("close the browser", async () => {
    await s.browser?.close();
  });
}
