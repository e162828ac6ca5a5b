// Shared by the browser tests: build and start `moat demo`, serve files on
// localhost, start the system Chromium. No test tool downloads a browser.
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, extname, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const chromiumPath = process.env.MOAT_CHROMIUM ?? "/usr/bin/chromium";

export function fail(msg) {
  console.error("FAIL: " + msg);
  process.exitCode = 1;
  throw new Error(msg);
}

export function check(cond, msg) {
  if (!cond) fail(msg);
  console.log("ok   " + msg);
}

/** A free loopback port, for flags that need a number up front. */
export async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Builds cmd/moat once into a temporary directory. */
export function buildMoat() {
  const dir = mkdtempSync(join(tmpdir(), "moat-js-"));
  const bin = join(dir, "moat");
  execFileSync("go", ["build", "-o", bin, "./cmd/moat"], { cwd: repo, stdio: "inherit" });
  return { bin, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts `moat demo` with args and waits for its banner. */
export async function startDemo(bin, args) {
  const ports = { bff: await freePort(), idp: await freePort(), api: await freePort(), admin: await freePort() };
  const proc = spawn(bin, ["demo", "--bff-port", ports.bff, "--idp-port", ports.idp, "--api-port", ports.api, "--admin-port", ports.admin, ...args].map(String), {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout.on("data", (d) => (out += d));
  proc.stderr.on("data", (d) => (out += d));
  const deadline = Date.now() + 30_000;
  while (!out.includes("Press Ctrl-C")) {
    if (proc.exitCode !== null || Date.now() > deadline) fail("moat demo did not start:\n" + out);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, ports, logs: () => out, stop: () => proc.kill("SIGINT") };
}

const types = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json", ".css": "text/css" };

/** Serves routes (path -> file, prefix/ -> dir, or path -> {type, body}) on 127.0.0.1 and [::1] at port. */
export async function serveStatic(port, routes) {
  const handler = (req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    for (const [prefix, target] of Object.entries(routes)) {
      if (typeof target === "object" && path === prefix) {
        res.writeHead(200, { "Content-Type": target.type }).end(target.body);
        return;
      }
      if (path === prefix || (prefix.endsWith("/") && path.startsWith(prefix))) {
        const file = prefix.endsWith("/") ? join(target, path.slice(prefix.length)) : target;
        if (existsSync(file)) {
          res.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream" });
          res.end(readFileSync(file));
          return;
        }
      }
    }
    res.writeHead(404).end("not found");
  };
  const servers = [];
  for (const host of ["127.0.0.1", "::1"]) {
    const srv = createServer(handler);
    try {
      await new Promise((ok, bad) => srv.once("error", bad).listen(port, host, ok));
      servers.push(srv);
    } catch (e) {
      if (host === "127.0.0.1") throw e; // no IPv6 loopback: 127.0.0.1 is enough
    }
  }
  return { close: () => servers.forEach((s) => s.close()) };
}

export async function launchChromium() {
  if (!existsSync(chromiumPath)) fail(`${chromiumPath} is missing: install Debian's chromium package`);
  return chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Fills the demo IdP's login form. */
export async function idpLogin(page) {
  await page.waitForSelector("#username");
  await page.fill("#username", "demo");
  await page.fill("#password", "demo-password");
  await page.click('button[type="submit"]');
}
