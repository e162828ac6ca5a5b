// Browser test of @moat-bff/client against a real `moat demo`, in the
// system Chromium: an SPA on http://<host>:<port> calling moat
// cross-origin on http://<host>:<port> (CSRF header mode, CORS), for both
// host names users type: localhost and 127.0.0.1.
import { join } from "node:path";
import { buildMoat, check, fail, freePort, idpLogin, launchChromium, repo, serveStatic, startDemo } from "./lib.mjs";

const moatBin = buildMoat();
try {
  for (const host of ["localhost", "127.0.0.1"]) {
    console.log(`== SPA and moat on ${host}`);
    await walk(host);
  }
  console.log("browser test passed");
} finally {
  moatBin.cleanup();
}

async function walk(host) {
  const spaPort = await freePort();
  const spa = `http://${host}:${spaPort}`;
  const demo = await startDemo(moatBin.bin, ["--frontend-origin", spa]);
  const api = `http://${host}:${demo.ports.bff}`;
  const files = await serveStatic(spaPort, {
    "/": join(repo, "clients/js/browser-test/index.html"),
    "/client/": join(repo, "clients/js/packages/client/dist"),
    "/config.js": { type: "text/javascript", body: `export const api = ${JSON.stringify(api)};` },
  });
  const browser = await launchChromium();
  try {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const open = async (p, q = "") => {
      await p.goto(`${spa}/${q}`);
      await p.waitForFunction(() => document.getElementById("ready")?.textContent === "ready");
    };
    await open(page);

    let s = await page.evaluate(async () => { const s = await moat.checkSession(); return { ...s }; });
    check(s.loggedIn === false, "logged out at first");
    let err = await page.evaluate(() => moat.fetch("/resource/api/recipe").then(() => "no error", (e) => e.name + " " + e.status));
    check(err === "UnauthenticatedError 401", `a call without a session is UnauthenticatedError (${err})`);

    // Login: to the IdP and back to returnTo on the SPA.
    await page.evaluate(() => moat.login({ returnTo: "/?after=login" }));
    await idpLogin(page);
    await page.waitForURL(`${spa}/?after=login`);
    await page.waitForFunction(() => document.getElementById("ready")?.textContent === "ready");
    s = await page.evaluate(async () => { const s = await moat.checkSession(); return { loggedIn: s.loggedIn, email: s.user?.email, expiresIn: s.expiresAt - Date.now() }; });
    check(s.loggedIn && s.email === "dana.demo@example.com", "login returns to the SPA, logged in");
    check(s.expiresIn > 60_000, `expiresAt is a Date in the future (${Math.round(s.expiresIn / 1000)}s)`);

    const recipe = await page.evaluate(() => moat.json("/resource/api/recipe"));
    check(recipe.servedTo === "3c1e5b0d-demo-user", "a proxied API call through moat.json");
    const profile = await page.evaluate(() => moat.json("/auth/userinfo"));
    check(profile.userInfo?.email === "dana.demo@example.com", "/auth/userinfo");
    const local = await page.evaluate(() => moat.json("/api/protected-data"));
    check(local.message?.startsWith("Hello, Dana Demo!"), "moat's local API");
    err = await page.evaluate(() =>
      new lib.MoatClient({ baseUrl: moat.baseUrl, csrfHeader: false, channel: false }).fetch("/resource/api/recipe").then(() => "no error", (e) => e.name + " " + e.code),
    );
    check(err === "CsrfError csrf", `a call without X-CSRF is CsrfError (${err})`);
    check(await page.evaluate(() => document.cookie === "" && localStorage.length === 0 && sessionStorage.length === 0), "no cookie or storage readable by script");

    // Cross-tab: a second tab, logged in; logging out in the first ends it there.
    const tab2 = await ctx.newPage();
    await open(tab2);
    check(await tab2.evaluate(async () => (await moat.checkSession()).loggedIn), "the second tab shares the session");
    await page.evaluate(() => moat.logout());
    await page.waitForURL(`${spa}/`);
    await tab2.waitForFunction(() => window.ends.includes("other-tab"), null, { timeout: 5000 }).catch(() => fail("the second tab did not hear of the logout"));
    check(true, "logout in one tab ends the session in the other (BroadcastChannel)");
    await page.waitForFunction(() => document.getElementById("ready")?.textContent === "ready");
    check(!(await page.evaluate(async () => (await moat.checkSession()).loggedIn)), "logout followed moat to the IdP and back, logged out");
    err = await tab2.evaluate(() => moat.fetch("/resource/api/recipe").then(() => "no error", (e) => e.name));
    check(err === "UnauthenticatedError", "the old session is gone at moat");
  } catch (e) {
    console.error(demo.logs());
    throw e;
  } finally {
    await browser.close();
    files.close();
    demo.stop();
  }
}
