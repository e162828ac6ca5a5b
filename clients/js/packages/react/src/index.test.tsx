// @vitest-environment jsdom
import { act } from "react";
import { createRoot } from "react-dom/client";
import type { Root } from "react-dom/client";
import { afterEach, describe, expect, it } from "vitest";
import { MoatClient, UnauthenticatedError } from "@moat-bff/client";
import { MoatProvider, RequireLogin, useMoatFetch, useSession } from "./index.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function fakeClient(routes: Record<string, () => Response>) {
  const assigned: string[] = [];
  const client = new MoatClient({
    channel: false,
    fetch: (async (input: RequestInfo | URL) => {
      const h = routes[String(input).split("?")[0]!];
      return h ? h() : json(404, { error: "not_found" });
    }) as typeof fetch,
    navigator: { assign: (u) => assigned.push(u), href: () => "http://localhost:5173/orders" },
  });
  return { client, assigned };
}

let root: Root | undefined;
let host: HTMLElement | undefined;
afterEach(() => {
  act(() => root?.unmount());
  host?.remove();
});

async function render(ui: React.ReactNode) {
  host = document.createElement("div");
  document.body.append(host);
  root = createRoot(host);
  await act(async () => root!.render(ui));
  // let the session check and fetches settle
  for (let i = 0; i < 5; i++) await act(async () => await new Promise((r) => setTimeout(r, 0)));
  return host;
}

function Status() {
  const s = useSession();
  return <p id="status">{s.status + (s.session?.user ? " " + String(s.session.user.name) : "")}</p>;
}

describe("MoatProvider and useSession", () => {
  it("checks the session on mount", async () => {
    const { client } = fakeClient({ "/auth/checksession": () => json(200, { loggedIn: true, user: { sub: "u", name: "Dana" } }) });
    const el = await render(<MoatProvider client={client}><Status /></MoatProvider>);
    expect(el.textContent).toBe("loggedIn Dana");
  });

  it("reports an unreachable moat as error", async () => {
    const { client } = fakeClient({ "/auth/checksession": () => json(503, { error: "unavailable" }) });
    const el = await render(<MoatProvider client={client}><Status /></MoatProvider>);
    expect(el.textContent).toBe("error");
  });

  it("throws outside a provider", () => {
    expect(() => act(() => createRoot(document.createElement("div")).render(<Status />))).toThrow(/MoatProvider/);
  });
});

describe("RequireLogin", () => {
  it("renders children for a logged-in user", async () => {
    const { client, assigned } = fakeClient({ "/auth/checksession": () => json(200, { loggedIn: true, user: { sub: "u" } }) });
    const el = await render(<MoatProvider client={client}><RequireLogin fallback="wait">secret</RequireLogin></MoatProvider>);
    expect(el.textContent).toBe("secret");
    expect(assigned).toEqual([]);
  });

  it("sends a logged-out user to login, back to this page", async () => {
    const { client, assigned } = fakeClient({ "/auth/checksession": () => json(200, { loggedIn: false }) });
    const el = await render(<MoatProvider client={client}><RequireLogin fallback="wait">secret</RequireLogin></MoatProvider>);
    expect(el.textContent).toBe("wait");
    expect(assigned).toEqual(["/auth/login?returnTo=%2Forders"]);
  });

  it("shows loggedOut instead, when given", async () => {
    const { client, assigned } = fakeClient({ "/auth/checksession": () => json(200, { loggedIn: false }) });
    const el = await render(<MoatProvider client={client}><RequireLogin loggedOut="please log in">secret</RequireLogin></MoatProvider>);
    expect(el.textContent).toBe("please log in");
    expect(assigned).toEqual([]);
  });
});

function Recipe({ path }: { path: string | null }) {
  const r = useMoatFetch<{ name: string }>(path);
  if (r.status === "error") return <p>{r.error instanceof UnauthenticatedError ? "unauthenticated" : "error"}</p>;
  return <p>{r.status + (r.data ? " " + r.data.name : "")}</p>;
}

describe("useMoatFetch", () => {
  it("fetches JSON through moat", async () => {
    const { client } = fakeClient({
      "/auth/checksession": () => json(200, { loggedIn: true, user: { sub: "u" } }),
      "/resource/api/recipe": () => json(200, { name: "soup" }),
    });
    const el = await render(<MoatProvider client={client}><Recipe path="/resource/api/recipe" /></MoatProvider>);
    expect(el.textContent).toBe("done soup");
  });

  it("gives moat's typed error, and the session ends", async () => {
    const { client } = fakeClient({
      "/auth/checksession": () => json(200, { loggedIn: true, user: { sub: "u" } }),
      "/resource/api/recipe": () => json(401, { error: "unauthenticated", message: "log in" }),
    });
    const el = await render(<MoatProvider client={client}><Recipe path="/resource/api/recipe" /><Status /></MoatProvider>);
    expect(el.textContent).toBe("unauthenticatedloggedOut");
  });

  it("skips a null path", async () => {
    const { client } = fakeClient({ "/auth/checksession": () => json(200, { loggedIn: false }) });
    const el = await render(<MoatProvider client={client}><Recipe path={null} /></MoatProvider>);
    expect(el.textContent).toBe("idle");
  });
});
