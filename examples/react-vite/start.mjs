// npm start: `moat demo` for this SPA's origin, and Vite, until Ctrl-C.
// Ports come from the environment (EXAMPLE_PORT, MOAT_BFF_PORT, ...) so a
// test can run it next to other things.
import { spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const env = process.env;
const spaPort = env.EXAMPLE_PORT ?? "5173";
const bffPort = env.MOAT_BFF_PORT ?? "4001";
const moatCmd = env.MOAT_BIN ? [env.MOAT_BIN] : ["go", "run", "./cmd/moat"];
const demoArgs = ["demo", "--frontend-origin", `http://localhost:${spaPort}`, "--bff-port", bffPort];
for (const [flag, v] of [["--idp-port", env.MOAT_IDP_PORT], ["--api-port", env.MOAT_API_PORT], ["--admin-port", env.MOAT_ADMIN_PORT]]) {
  if (v) demoArgs.push(flag, v);
}

const children = [];
function run(cmd, args, opts) {
  const p = spawn(cmd, args, { stdio: "inherit", ...opts });
  children.push(p);
  p.on("exit", (code, signal) => {
    if (!stopping) {
      console.error(`${cmd} ${args.join(" ")} exited (${code ?? signal}); stopping`);
      stop(code || 1);
    }
  });
  return p;
}
let stopping = false;
function stop(code = 0) {
  stopping = true;
  for (const p of children) p.kill("SIGINT");
  setTimeout(() => process.exit(code), 500).unref();
}
process.on("SIGINT", () => stop());
process.on("SIGTERM", () => stop());

run(moatCmd[0], [...moatCmd.slice(1), ...demoArgs], { cwd: repo });
run(resolve(here, "node_modules/.bin/vite"), [], {
  cwd: here,
  env: { ...env, EXAMPLE_PORT: spaPort, MOAT_URL: `http://localhost:${bffPort}` },
});
console.log(`\nOpen http://localhost:${spaPort}/ and log in as demo / demo-password.\n`);
