// The RTMAS web UI in headless Chromium, as an operator and a viewer use it:
// signing in, triggering a DAG with a param and watching its grid fill in,
// backfilling three days, reading a task's log, what a viewer may not do,
// and markup in DAG files and task output reaching the page as text.
//
// `cargo test --test browser` starts the system and runs this script with
// RTMAS_URL, RTMAS_ADMIN_PASSWORD, RTMAS_VIEWER_PASSWORD and SCREENSHOT_DIR
// set; the DAGs it expects are those of tests/browser/dags/. Each scenario
// saves screenshots of its key steps, and one named FAILED-… of the page it
// was on when it failed.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
// A step in the page (a click, a navigation) on a loaded machine.
const STEP_MS = 30_000;
// A run or a backfill going from queued to finished.
const RUN_MS = 120_000;
const XSS_PAYLOAD = '<script>window.__xss = 1</script><img src=x onerror="window.__xss=2">';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this script through \`cargo test --test browser\``);
  }
  return value;
}

const BASE = required("RTMAS_URL").replace(/\/$/, "");
const ADMIN_PASSWORD = required("RTMAS_ADMIN_PASSWORD");
const VIEWER_PASSWORD = required("RTMAS_VIEWER_PASSWORD");
const SCREENSHOTS = required("SCREENSHOT_DIR");
mkdirSync(SCREENSHOTS, { recursive: true });

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
  });
});

after(async () => {
  await browser?.close();
});

/// Runs `body` with a fresh page (its own cookies) and fails the scenario
/// on any script error or JavaScript dialog in it; on failure a screenshot
/// of the page is saved and its path added to the error.
async function scenario(name, body) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(STEP_MS);
  const problems = [];
  page.on("pageerror", (err) => problems.push(`script error on ${page.url()}: ${err.message}`));
  page.on("dialog", async (dialog) => {
    problems.push(`a ${dialog.type()} dialog opened on ${page.url()}: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) {
      problems.push(`the CSP blocked something on ${page.url()} (injected markup?): ${msg.text()}`);
    }
  });
  let step = 0;
  const shot = async (label) => {
    step += 1;
    const path = join(SCREENSHOTS, `${name}-${String(step).padStart(2, "0")}-${label}.png`);
    await page.screenshot({ path, fullPage: true });
    return path;
  };
  try {
    await body(page, shot);
    assert.deepEqual(problems, [], `${name}: the page misbehaved`);
  } catch (err) {
    const path = join(SCREENSHOTS, `FAILED-${name}.png`);
    await page.screenshot({ path, fullPage: true }).catch(() => {});
    err.message = `${err.message}\n  (on ${page.url()}; screenshot ${path})` +
      (problems.length ? `\n  also: ${problems.join("\n  also: ")}` : "");
    throw err;
  } finally {
    await context.close();
  }
}

/// Waits until `predicate(arg)` holds in the page, failing with `what`.
async function waitInPage(page, what, predicate, arg, timeout = RUN_MS) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 250 });
  } catch (err) {
    throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}: ${err.message}`);
  }
}

function path(page) {
  return new URL(page.url()).pathname;
}

async function signIn(page, username, password) {
  await page.goto(`${BASE}/dags`);
  assert.equal(path(page), "/login", "an anonymous visit to /dags should go to the sign-in form");
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  await Promise.all([page.waitForURL((url) => url.pathname !== "/login"), page.click('button:text-is("Sign in")')]);
  assert.equal(path(page), "/dags", `${username} should land on the DAGs page after signing in`);
}

/// Triggers `dagId` from its trigger form with `param.NAME = value`; returns
/// the new run's primary key, read from the run page it lands on.
async function triggerWithParam(page, dagId, name, value, shot) {
  await page.goto(`${BASE}/dags/${dagId}`);
  await Promise.all([page.waitForURL(`**/dags/${dagId}/trigger`), page.click("#trigger-link")]);
  const field = page.locator(`#trigger-form [name="param.${name}"]`);
  assert.equal(await field.count(), 1, `the trigger form of ${dagId} should have a field for param ${name}`);
  await field.fill(value);
  if (shot) await shot("trigger-form");
  await Promise.all([
    page.waitForURL((url) => /^\/runs\/\d+$/.test(url.pathname)),
    page.click('#trigger-form button[type="submit"]'),
  ]);
  return Number(path(page).split("/")[2]);
}

/// The run page's state badge, once the run has finished (the page refreshes
/// itself while the run is live).
async function waitRunFinished(page, runPk) {
  await waitInPage(
    page,
    `run ${runPk} to finish on its page`,
    () => {
      const badge = document.getElementById("run-state");
      return badge && ["success", "failed"].includes(badge.textContent.trim());
    },
    null,
  );
  return (await page.textContent("#run-state")).trim();
}

function daysAgo(n) {
  const day = new Date();
  day.setUTCHours(0, 0, 0, 0);
  day.setUTCDate(day.getUTCDate() - n);
  return day.toISOString().slice(0, 10);
}

test("an admin signs in through the login form and lands on the DAGs page", () =>
  scenario("login", async (page, shot) => {
    await page.goto(`${BASE}/`);
    assert.equal(path(page), "/login", "an anonymous visit should be sent to the sign-in form");
    await shot("form");

    await page.fill('input[name="username"]', "admin");
    await page.fill('input[name="password"]', "not-the-password");
    await page.click('button:text-is("Sign in")');
    await page.waitForSelector('[role="alert"]');
    assert.match(await page.textContent('[role="alert"]'), /wrong username or password/i);
    await shot("wrong-password");

    await page.fill('input[name="password"]', ADMIN_PASSWORD);
    await Promise.all([page.waitForURL("**/dags"), page.click('button:text-is("Sign in")')]);
    assert.equal(path(page), "/dags", "signing in should land on the DAGs page");
    for (const dag of ["ui_params", "ui_daily", "ui_xss"]) {
      assert.equal(
        await page.locator(`#dag-list tr[data-dag="${dag}"]`).count(),
        1,
        `the DAGs page should list ${dag}`,
      );
    }
    assert.equal((await page.textContent(".who .role")).trim(), "admin");
    await shot("dags");
  }));

test("a DAG triggered with a param runs, fills its grid with successes and keeps the param in its conf", () =>
  scenario("trigger", async (page, shot) => {
    await signIn(page, "admin", ADMIN_PASSWORD);
    const value = `grid-${Date.now()}`;
    const runPk = await triggerWithParam(page, "ui_params", "greeting", value, shot);
    await shot("run-page");
    const conf = JSON.parse(await page.textContent("pre.conf"));
    assert.equal(conf.greeting, value, "the run's conf should hold the param from the form");

    await page.goto(`${BASE}/dags/ui_params`);
    assert.equal(
      await page.locator(`a.run-head[href="/runs/${runPk}"]`).count(),
      1,
      `the grid should have a column for run ${runPk}`,
    );
    const shownState = await page.getAttribute(`a.run-head[href="/runs/${runPk}"]`, "data-run-state");
    if (!["success", "failed"].includes(shownState)) {
      assert.ok(
        await page.locator("#dag-live[data-refresh] #grid").count(),
        `the grid shows run ${runPk} ${shownState}, so it should refresh itself (data-refresh)`,
      );
    }
    await shot("grid-fresh");
    // No reload from here on: the grid refreshes itself.
    await waitInPage(
      page,
      `the grid to show run ${runPk} succeeded without a reload`,
      (pk) => {
        const head = document.querySelector(`a.run-head[href="/runs/${pk}"]`);
        const cells = [...document.querySelectorAll(`a.cell[href^="/runs/${pk}/tasks/"]`)];
        return (
          head?.dataset.runState === "success" &&
          cells.length === 2 &&
          cells.every((c) => c.dataset.state === "success" && c.classList.contains("state-success"))
        );
      },
      runPk,
    );
    await shot("grid-success");
  }));

test("a backfill of three days is previewed, created and runs to the end", () =>
  scenario("backfill", async (page, shot) => {
    await signIn(page, "admin", ADMIN_PASSWORD);
    await page.goto(`${BASE}/dags/ui_daily`);
    await Promise.all([page.waitForURL("**/dags/ui_daily/backfill"), page.click("#backfill-link")]);
    // Yesterday has the scheduler's own run; these three days have none.
    const from = daysAgo(5);
    const to = daysAgo(3);
    await page.fill('#backfill-form input[name="from"]', from);
    await page.fill('#backfill-form input[name="to"]', to);
    await shot("form");

    await Promise.all([page.waitForLoadState("load"), page.click('button:text-is("Preview runs")')]);
    await page.waitForSelector("#plan");
    const planned = await page.locator("#plan tbody tr").allInnerTexts();
    assert.equal(planned.length, 3, `the preview of ${from}..${to} should list 3 runs:\n${planned.join("\n")}`);
    assert.ok(planned.every((row) => row.includes("new run")), `every previewed run should be new:\n${planned}`);
    assert.equal(await page.inputValue('#backfill-form input[name="from"]'), from, "the preview keeps `from`");
    assert.equal(await page.inputValue('#backfill-form input[name="to"]'), to, "the preview keeps `to`");
    await shot("preview");

    await Promise.all([
      page.waitForURL((url) => /^\/backfills\/\d+$/.test(url.pathname)),
      page.click("#create-backfill"),
    ]);
    const runs = page.locator("#backfill-runs tbody tr a[href^='/runs/']");
    assert.equal(await runs.count(), 3, "the backfill page should list its 3 runs");
    await shot("created");

    await waitInPage(
      page,
      "the backfill page to show the backfill completed and its 3 runs succeeded",
      () => {
        const state = document.getElementById("backfill-state")?.textContent.trim();
        const badges = [...document.querySelectorAll("#backfill-runs tbody tr .badge")];
        return (
          state === "completed" &&
          badges.length === 3 &&
          badges.every((b) => b.textContent.trim() === "success")
        );
      },
      null,
    );
    const dates = await page.locator("#backfill-runs tbody tr td:nth-child(3)").allTextContents();
    for (const day of [from, daysAgo(4), to]) {
      assert.ok(dates.some((d) => d.includes(day)), `a backfill run should have logical date ${day}: ${dates}`);
    }
    await shot("completed");
  }));

test("a task's log, opened from the run page, shows the line the task printed", () =>
  scenario("task-log", async (page, shot) => {
    await signIn(page, "admin", ADMIN_PASSWORD);
    const value = `log-${Date.now()}`;
    const runPk = await triggerWithParam(page, "ui_params", "greeting", value);
    assert.equal(await waitRunFinished(page, runPk), "success", `run ${runPk} should succeed`);
    await shot("run-finished");

    await Promise.all([
      page.waitForURL(`**/runs/${runPk}/tasks/greet`),
      page.click('#task-instances tr[data-task="greet"] a[href$="/tasks/greet"]'),
    ]);
    await waitInPage(
      page,
      `the log of greet to show "greeting: ${value}"`,
      (line) => document.getElementById("log")?.textContent.includes(line),
      `greeting: ${value}`,
      STEP_MS,
    );
    await shot("log");
  }));

test("a viewer sees DAGs but can neither open nor post the trigger form", () =>
  scenario("viewer", async (page, shot) => {
    await signIn(page, "viewer", VIEWER_PASSWORD);
    assert.equal((await page.textContent(".who .role")).trim(), "viewer");

    await page.goto(`${BASE}/dags/ui_params`);
    await page.waitForSelector("#grid");
    assert.equal(await page.locator("#trigger-link").count(), 0, "a viewer should see no Trigger link");
    assert.equal(
      await page.locator('a:text-is("Trigger"), button:text-is("Trigger")').count(),
      0,
      "a viewer should see no Trigger button",
    );
    const runsBefore = await page.locator("#runs tbody a[href^='/runs/']").count();
    await shot("dag-page");

    const form = await page.goto(`${BASE}/dags/ui_params/trigger`);
    assert.equal(form.status(), 403, "the trigger form should be refused to a viewer");
    assert.match(await page.textContent("main"), /403/);
    assert.match(await page.textContent("main"), /operator/i, "the refusal should name the role needed");
    await shot("trigger-form-refused");

    // A post with the viewer's own, valid CSRF token, so that only the role
    // can be why it is refused.
    await page.goto(`${BASE}/dags/ui_params`);
    const csrf = await page.getAttribute('form[action="/logout"] input[name="csrf_token"]', "value");
    assert.ok(csrf, "the page should carry the session's CSRF token");
    const posted = await page.request.post(`${BASE}/dags/ui_params/trigger`, {
      form: { csrf_token: csrf, "param.greeting": "from-a-viewer" },
      maxRedirects: 0,
    });
    assert.equal(posted.status(), 403, "a viewer's trigger post should be refused");
    assert.match(await posted.text(), /operator/i, "the refusal should name the role needed");

    // The same post as a browser makes it, from a form in the page.
    const [response] = await Promise.all([
      page.waitForNavigation(),
      page.evaluate(
        ({ action, token }) => {
          const f = document.createElement("form");
          f.method = "post";
          f.action = action;
          for (const [name, value] of [["csrf_token", token], ["param.greeting", "from-a-viewer"]]) {
            const input = document.createElement("input");
            input.type = "hidden";
            input.name = name;
            input.value = value;
            f.append(input);
          }
          document.body.append(f);
          f.submit();
        },
        { action: "/dags/ui_params/trigger", token: csrf },
      ),
    ]);
    assert.equal(response.status(), 403, "a viewer's trigger form post should be refused");
    await shot("trigger-post-refused");

    await page.goto(`${BASE}/dags/ui_params`);
    assert.equal(
      await page.locator("#runs tbody a[href^='/runs/']").count(),
      runsBefore,
      "a refused trigger should make no run",
    );
  }));

test("markup in a DAG description and in a task's log is shown as text", () =>
  scenario("xss", async (page, shot) => {
    await signIn(page, "admin", ADMIN_PASSWORD);
    const asText = async (selector, where) => {
      const element = page.locator(selector).first();
      assert.ok((await element.textContent()).includes("<script>"), `${where} should show the literal <script>`);
      assert.equal(
        await element.evaluate((e) => e.querySelectorAll("script, img").length),
        0,
        `${where} should hold no script or img element`,
      );
      assert.equal(await page.evaluate(() => window.__xss), undefined, `${where}: the payload ran`);
    };

    await asText('#dag-list tr[data-dag="ui_xss"] .muted', "the DAGs list's description of ui_xss");
    await shot("dags");

    await page.goto(`${BASE}/dags/ui_xss`);
    await asText("#dag-description", "the DAG page's description");
    await shot("dag-page");

    await Promise.all([page.waitForURL("**/dags/ui_xss/trigger"), page.click("#trigger-link")]);
    await asText("main .description", "the trigger form's description");
    await Promise.all([
      page.waitForURL((url) => /^\/runs\/\d+$/.test(url.pathname)),
      page.click('#trigger-form button[type="submit"]'),
    ]);
    const runPk = Number(path(page).split("/")[2]);
    assert.equal(await waitRunFinished(page, runPk), "success", `run ${runPk} should succeed`);

    await page.goto(`${BASE}/runs/${runPk}/tasks/shout`);
    await waitInPage(
      page,
      "the log of shout to show the task's output",
      () => document.getElementById("log")?.textContent.includes("window.__xss"),
      null,
      STEP_MS,
    );
    await asText("#log", "the task log");
    assert.ok(
      (await page.textContent("#log")).includes(XSS_PAYLOAD),
      "the task log should show the whole line the task printed, unchanged",
    );
    await shot("task-log");
  }));

test("the log metrics page draws its three charts with the vendored Chart.js", () =>
  scenario("metrics", async (page, shot) => {
    await signIn(page, "admin", ADMIN_PASSWORD);
    await page.goto(`${BASE}/metrics?hours=24`);
    await waitInPage(
      page,
      "the metrics page to draw its charts",
      () => document.getElementById("metrics")?.dataset.drawn === "true",
      undefined,
      STEP_MS,
    );
    assert.equal(await page.evaluate(() => typeof window.Chart), "function", "Chart.js is loaded");
    const drawn = await page.evaluate(() =>
      ["chart-volume", "chart-errors", "chart-latency"].map((id) => Boolean(window.Chart.getChart(id))),
    );
    assert.deepEqual(drawn, [true, true, true], "each canvas holds a chart");
    const services = await page.evaluate(() =>
      window.Chart.getChart("chart-volume").data.datasets.map((d) => [d.label, d.data.length]),
    );
    assert.deepEqual(services, [["api", 60], ["checkout", 60]], "an hour of two services' volume");
    await shot("charts");
  }));

test("pages fit a phone's width and a narrow laptop's without sideways scrolling", () =>
  scenario("narrow", async (page, shot) => {
    await signIn(page, "admin", ADMIN_PASSWORD);
    for (const [width, height] of [[390, 844], [1024, 768]]) {
      await page.setViewportSize({ width, height });
      for (const where of ["/dags", "/history", "/alerts", "/dags/ui_params/trigger"]) {
        await page.goto(`${BASE}${where}`);
        const overflow = await page.evaluate(
          () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
        );
        assert.ok(overflow <= 1, `${where} at ${width}px is ${overflow}px wider than the window`);
        await shot(`${width}px${where.replaceAll("/", "-")}`);
      }
    }
  }));
