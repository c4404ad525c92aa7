// The console in a real browser (docs/console.md): Debian's headless Chromium driven by
// playwright-core, against the real `bankconnect serve` and `bankconnect sim`, clicking through
// as a person would. BANKCONNECT_BIN names the binary (default: the workspace's debug build);
// CHROMIUM the browser (default /usr/bin/chromium). SCREENSHOTS=DIR also writes the pages'
// screenshots (light and dark) there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.BANKCONNECT_BIN || resolve(here, "..", "target", "debug", "bankconnect");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS;
const ADMIN = "browser-admin-token-0001";
const READER = "browser-reader-token-0001";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const children = [];
let work, serveUrl, receiver, receiverDown = true, deliveries = [], browser;

/** Starts a child and resolves with what follows "listening on " on its first stdout line. */
function listening(args, env) {
  return new Promise((resolveUrl, reject) => {
    const child = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let errors = "";
    child.stderr.on("data", (chunk) => { errors += chunk; });
    child.on("exit", (code) => reject(new Error(`${args[0]} exited ${code}: ${errors}`)));
    const lines = createInterface({ input: child.stdout });
    lines.once("line", (line) => {
      if (line.startsWith("listening on ")) { resolveUrl(line.slice("listening on ".length)); }
      else { reject(new Error(`unexpected first line: ${line}`)); }
    });
  });
}

async function api(path, options = {}) {
  const response = await fetch(serveUrl + path, {
    ...options,
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json", ...(options.headers || {}) },
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) { throw new Error(`timed out waiting for ${what}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  assert.ok(existsSync(BIN), `no binary at ${BIN} (cargo build -p bankconnect-cli)`);
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM} (apt-get install -y chromium)`);
  work = mkdtempSync(join(tmpdir(), "bc-console-"));
  receiver = createServer((request, response) => {
    let body = "";
    request.on("data", (c) => { body += c; });
    request.on("end", () => {
      deliveries.push({ id: request.headers["webhook-id"], body });
      response.writeHead(receiverDown ? 503 : 200, { "content-type": "text/plain" });
      response.end(receiverDown ? "down for maintenance <b>soon</b>\n" : "ok");
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  const sim = await listening(["sim", "--addr", "127.0.0.1:0"], {});
  serveUrl = await listening([
    "serve", "--listen", "127.0.0.1:0", "--store", `sqlite:${join(work, "serve.db")}`,
    "--api-token", ADMIN, "--read-token", READER, "--interval", "200ms",
    "--deliver-to", `http://127.0.0.1:${receiver.address().port}/in`,
    "--deliver-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "--delivery-schedule", "0s,100ms",
  ], { BANKCONNECT_BASE_URL: sim, BANKCONNECT_API_KEY: "sim-api-key", BANKCONNECT_SERVER_HASH: "sim-server-hash" });
  for (const [id, reference] of [["sim-completed", "loan-42"], ["sim-account-incomplete-months", "\"><script>alert(1)</script>"], ["sim-not-requested", "loan-77"]]) {
    const added = await api("/v1/sessions", { method: "POST", body: JSON.stringify({ session_id: id, reference }) });
    assert.equal(added.status, 202);
  }
  await until("both given up", async () => {
    const page = await api("/v1/sessions?delivery=given_up");
    return page.body && page.body.sessions.length === 2;
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

after(async () => {
  if (browser) { await browser.close(); }
  for (const child of children) { child.kill("SIGTERM"); }
  if (receiver) { receiver.close(); }
  if (work) { rmSync(work, { recursive: true, force: true }); }
});

async function loggedIn(token, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  await page.goto(serveUrl + "/ui");
  assert.match(page.url(), /\/ui\/login$/);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/ui$/);
  return { context, page };
}

async function shot(page, name) {
  if (SHOTS) { await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true }); }
}

test("an admin finds a loan, reads its story, replays its delivery, pauses and recovers", async () => {
  const { context, page } = await loggedIn(ADMIN, { viewport: { width: 1280, height: 900 } });
  await assert.doesNotReject(page.getByRole("heading", { level: 1, name: "Overview" }).waitFor());
  for (const name of ["Overview", "Sessions", "Delivery"]) {
    assert.equal(await page.getByRole("navigation").getByRole("link", { name, exact: true }).count(), 1);
  }
  await shot(page, "console-overview");

  // Filter: the URL is the view.
  await page.getByRole("link", { name: "Sessions", exact: true }).click();
  await page.getByLabel("Delivery").selectOption("given_up");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/delivery=given_up/);
  const rows = page.getByRole("table").getByRole("row");
  assert.equal(await rows.count(), 3, "a header row and two sessions");
  for (const header of ["Session", "Reference", "State", "Outcome", "Delivery", "Added", "Updated"]) {
    assert.equal(await page.getByRole("columnheader", { name: header, exact: true }).count(), 1, header);
  }
  // The hostile reference is shown as text, and ran nothing.
  assert.equal(await page.getByText("\"><script>alert(1)</script>").count(), 1);
  await page.getByLabel("Search").fill("loan-42");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/q=loan-42/);
  assert.equal(await page.getByRole("table").getByRole("row").count(), 2);
  await shot(page, "console-sessions");

  // A session's page: its outcome, its delivery, its history.
  await page.getByRole("link", { name: "sim-completed" }).click();
  await page.getByRole("heading", { name: "History" }).waitFor();
  for (const heading of ["Outcome", "Delivery", "History"]) {
    assert.equal(await page.getByRole("heading", { name: heading, exact: true }).count(), 1);
  }
  const history = page.locator("ol.timeline > li");
  assert.ok((await history.count()) >= 4, "added, progress, outcome, attempts");
  assert.match(await history.first().innerText(), /added/);
  assert.ok(await page.getByText("down for maintenance <b>soon</b>").count() >= 1, "the answer's excerpt, as text");
  await shot(page, "console-session");

  // Redeliver, once the back end is back.
  receiverDown = false;
  await page.getByRole("button", { name: "Redeliver" }).click();
  await page.getByRole("status").filter({ hasText: "Redelivery queued" }).waitFor();
  await until("the redelivery", async () => deliveries.filter((d) => d.id === "msg_sim-completed").length >= 3);

  // Pause, resume.
  await page.getByRole("link", { name: "Delivery", exact: true }).click();
  await page.getByRole("button", { name: "Pause deliveries" }).click();
  await page.getByRole("status").filter({ hasText: "paused" }).waitFor();
  assert.equal((await api("/v1/delivery")).body.paused, true);
  await page.getByRole("button", { name: "Resume deliveries" }).click();
  await page.getByRole("status").filter({ hasText: "resumed" }).waitFor();

  // Recover: a preview, then requeue (with the dialog confirmed).
  const since = new Date(Date.now() - 3600_000).toISOString().slice(0, 19) + "Z";
  await page.getByLabel("Since").fill(since);
  await page.getByRole("button", { name: "Preview" }).click();
  await page.getByRole("status").filter({ hasText: "Preview: 1 deliveries match" }).waitFor();
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Requeue" }).click();
  await page.getByRole("status").filter({ hasText: "Requeued 1 of 1" }).waitFor();
  await until("the recovered delivery", async () => deliveries.some((d) => d.id === "msg_sim-account-incomplete-months" && !receiverDown));
  await context.close();
});

test("the read-only login sees everything and no button, and a forged action is refused", async () => {
  const { context, page } = await loggedIn(READER);
  await page.goto(serveUrl + "/ui/sessions/sim-not-requested");
  await page.getByRole("heading", { name: "History" }).waitFor();
  for (const name of ["Poll now", "Cancel", "Redeliver"]) {
    assert.equal(await page.getByRole("button", { name }).count(), 0, name);
  }
  await page.goto(serveUrl + "/ui/delivery");
  assert.equal(await page.getByRole("button", { name: "Pause deliveries" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Preview" }).count(), 1);
  const csrf = await page.locator("input[name=csrf]").first().inputValue();
  const status = await page.evaluate(async (token) => {
    const response = await fetch("/ui/delivery/pause", { method: "POST", body: new URLSearchParams({ csrf: token }) });
    return response.status;
  }, csrf);
  assert.equal(status, 403);
  await context.close();
});

test("an admin polls and cancels a tracking session; Cancel asks first", async () => {
  const { context, page } = await loggedIn(ADMIN);
  await page.goto(serveUrl + "/ui/sessions/sim-not-requested");
  await page.getByRole("button", { name: "Poll now" }).click();
  await page.getByRole("status").filter({ hasText: "Poll asked for" }).waitFor();
  page.once("dialog", (dialog) => dialog.dismiss());
  await page.getByRole("button", { name: "Cancel" }).click();
  assert.equal((await api("/v1/sessions/sim-not-requested")).body.state, "tracking", "dismissed: nothing cancelled");
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("status").filter({ hasText: "cancelled" }).waitFor();
  assert.equal((await api("/v1/sessions/sim-not-requested")).body.state, "cancelled");
  await context.close();
});

test("without JavaScript every page is complete and Cancel confirms on a page", async () => {
  const { context, page } = await loggedIn(ADMIN, { javaScriptEnabled: false });
  await page.goto(serveUrl + "/ui/sessions");
  assert.ok((await page.getByRole("table").getByRole("row").count()) >= 4);
  await page.goto(serveUrl + "/ui/delivery");
  await page.getByLabel("Since").fill(new Date(Date.now() - 3600_000).toISOString().slice(0, 19) + "Z");
  await page.getByRole("button", { name: "Requeue" }).click();
  await page.getByRole("heading", { name: "Confirm" }).waitFor();
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("status").filter({ hasText: "Requeued" }).waitFor();
  await context.close();
});

test("dark mode and a 360 px phone", async () => {
  const { context, page } = await loggedIn(ADMIN, { colorScheme: "dark", viewport: { width: 360, height: 780 } });
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(background, "rgb(247, 247, 245)", "dark, not the light background");
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 360, `the overview fits 360 px (${wide})`);
  await shot(page, "console-overview-dark");
  await page.goto(serveUrl + "/ui/sessions");
  await shot(page, "console-sessions-dark");
  await page.goto(serveUrl + "/ui/sessions/sim-completed");
  const wideSession = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wideSession <= 360, `a session's page fits 360 px (${wideSession})`);
  await shot(page, "console-session-dark");
  await context.close();
});
