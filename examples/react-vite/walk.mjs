// CI walk of the example: `npm start` (go run ./cmd/moat demo + Vite on
// localhost, on free ports), then
// the system Chromium logs in, opens Profile and Call API, and logs out.
import { spawn } from "node:child_process";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { check, freePort, idpLogin, launchChromium } from "../../clients/js/browser-test/lib.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const ports = { spa: await freePort(), bff: await freePort(), idp: await freePort(), api: await freePort(), admin: await freePort() };
const app = spawn(process.execPath, ["start.mjs"], {
  cwd: here,
  detached: true, // its own process group: stopped with everything it started
  stdio: ["ignore", "pipe", "pipe"],
  env: {
    // `go run ./cmd/moat demo`, exactly as `npm start` does
    ...process.env, EXAMPLE_PORT: String(ports.spa), MOAT_BFF_PORT: String(ports.bff),
    MOAT_IDP_PORT: String(ports.idp), MOAT_API_PORT: String(ports.api), MOAT_ADMIN_PORT: String(ports.admin),
  },
});
let logs = "";
app.stdout.on("data", (d) => (logs += d));
app.stderr.on("data", (d) => (logs += d));

async function up(url) {
  const deadline = Date.now() + 180_000; // go run may compile moat first
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    if (app.exitCode !== null || Date.now() > deadline) throw new Error(`${url} did not come up:\n${logs}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const spa = `http://localhost:${ports.spa}`;
const browser = await launchChromium();
try {
  await up(`http://127.0.0.1:${ports.bff}/auth/checksession`);
  await up(`${spa}/`);
  const page = await browser.newPage();
  const state = (s) => page.waitForSelector(`main[data-status="${s}"]`, { timeout: 15_000 });
  await page.goto(`${spa}/`);
  await state("loggedOut");
  check(true, "the example loads logged out");
  await page.click("#login");
  await idpLogin(page);
  await page.waitForURL(`${spa}/`);
  await state("loggedIn");
  check((await page.textContent("#who")) === "Dana Demo", "login returns to the example, logged in as Dana Demo");
  await page.goto(`${spa}/#/profile`);
  await page.waitForSelector('#profile[data-state="done"]');
  check((await page.textContent("#email")) === "dana.demo@example.com", "Profile shows the UserInfo email");
  await page.goto(`${spa}/#/recipe`);
  await page.waitForSelector('#recipe[data-state="done"]');
  check(((await page.textContent("#recipe-name")) ?? "").length > 0, "Call API shows a recipe from the resource API");
  check(await page.evaluate(() => document.cookie === "" && localStorage.length === 0 && sessionStorage.length === 0), "no cookie or storage readable by script");
  await page.click("#logout");
  await page.waitForURL(`${spa}/`);
  await state("loggedOut");
  check(true, "logout goes through the IdP and back, logged out");
  console.log("example walk passed");
} catch (e) {
  console.error(logs);
  for (const p of browser.contexts().flatMap((c) => c.pages())) console.error("page at " + p.url());
  process.exitCode = 1;
  console.error(e);
} finally {
  await browser.close();
  try {
    process.kill(-app.pid, "SIGINT");
  } catch {}
}
