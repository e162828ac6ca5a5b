import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CsrfError,
  ForbiddenError,
  MoatClient,
  MoatError,
  RateLimitedError,
  StepUpRequiredError,
  UnauthenticatedError,
  UnavailableError,
  parseRetryAfter,
  toMoatError,
} from "./index.js";
import type { EndReason, Session } from "./index.js";

type Call = { url: string; init: RequestInit };

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", ...headers },
  });
}

/** A fake moat: routes by path, records every call. */
function fakeMoat(routes: Record<string, (init: RequestInit) => Response>) {
  const calls: Call[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, init });
    const path = new URL(url, "http://moat.test").pathname;
    const h = routes[path];
    if (!h) return json(404, { error: "not_found", message: "no such endpoint" });
    return h(init);
  }) as unknown as typeof globalThis.fetch;
  return { fetch, calls };
}

let channel = 0;
const clients: MoatClient[] = [];
function client(routes: Record<string, (init: RequestInit) => Response>, opts: { channel?: string; href?: string } = {}) {
  const moat = fakeMoat(routes);
  const assigned: string[] = [];
  const c = new MoatClient({
    baseUrl: "http://localhost:4001/",
    fetch: moat.fetch,
    channel: opts.channel ?? `test-${++channel}`,
    navigator: { assign: (u) => assigned.push(u), href: () => opts.href ?? "http://localhost:5173/orders?x=1#top" },
  });
  clients.push(c);
  return { c, calls: moat.calls, assigned };
}

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  vi.useRealTimers();
});

const loggedIn = (expiresAt = "2030-01-01T00:00:00Z") => () =>
  json(200, { loggedIn: true, user: { sub: "u1", name: "Dana" }, expiresAt });

describe("session state", () => {
  it("reads /auth/checksession with the cookie and expiresAt", async () => {
    const { c, calls } = client({ "/auth/checksession": loggedIn() });
    const changes: Session[] = [];
    c.on("change", (s) => changes.push(s));
    const s = await c.checkSession();
    expect(s).toEqual({ loggedIn: true, user: { sub: "u1", name: "Dana" }, expiresAt: new Date("2030-01-01T00:00:00Z") });
    expect(c.session).toBe(s);
    expect(changes).toHaveLength(1);
    expect(calls[0]!.url).toBe("http://localhost:4001/auth/checksession");
    expect(calls[0]!.init.credentials).toBe("include");
  });

  it("shares one request between concurrent checks", async () => {
    const { c, calls } = client({ "/auth/checksession": loggedIn() });
    await Promise.all([c.checkSession(), c.checkSession(), c.checkSession()]);
    expect(calls).toHaveLength(1);
  });

  it("throws a typed error when moat is unavailable, keeping the state", async () => {
    const { c } = client({ "/auth/checksession": () => json(503, { error: "unavailable", message: "retry" }, { "Retry-After": "7" }) });
    const err = await c.checkSession().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).retryAfter).toBe(7);
    expect(c.session).toBeUndefined();
  });
});

describe("login", () => {
  it("navigates to /auth/login with returnTo this page by default", () => {
    const { c, assigned } = client({});
    c.login();
    const u = new URL(assigned[0]!);
    expect(u.origin + u.pathname).toBe("http://localhost:4001/auth/login");
    expect(u.searchParams.get("returnTo")).toBe("/orders?x=1#top");
    expect([...u.searchParams.keys()]).toEqual(["returnTo"]);
  });

  it("passes prompt, max_age and acr_values", () => {
    const { c } = client({});
    const u = new URL(c.loginUrl({ returnTo: "/x", prompt: "login", maxAge: 0, acrValues: ["mfa", "phr"] }));
    expect(Object.fromEntries(u.searchParams)).toEqual({ returnTo: "/x", prompt: "login", max_age: "0", acr_values: "mfa phr" });
  });

  it("refuses a bad maxAge", () => {
    const { c } = client({});
    expect(() => c.loginUrl({ maxAge: -1 })).toThrow(RangeError);
    expect(() => c.loginUrl({ maxAge: 1.5 })).toThrow(RangeError);
  });

  it("works below a frontend's mount path (baseUrl /staff)", async () => {
    const moat = fakeMoat({ "/staff/api/x": () => json(200, {}) });
    const c = new MoatClient({
      baseUrl: "/staff/",
      fetch: moat.fetch,
      channel: false,
      navigator: { assign: () => {}, href: () => "https://app.example.com/staff/orders?x=1" },
    });
    clients.push(c);
    expect(c.loginUrl()).toBe("/staff/auth/login?returnTo=%2Fstaff%2Forders%3Fx%3D1");
    await c.fetch("/api/x");
    expect(moat.calls.map((x) => x.url)).toEqual(["/staff/api/x"]);
  });
});

describe("logout", () => {
  it("POSTs with X-CSRF, ends the session and follows moat's logoutUrl", async () => {
    const { c, calls, assigned } = client({
      "/auth/checksession": loggedIn(),
      "/auth/logout": () => json(200, { loggedOut: true, logoutUrl: "http://localhost:4001/auth/logout/continue?h=abc" }),
    });
    await c.checkSession();
    const ends: EndReason[] = [];
    c.on("end", (e) => ends.push(e.reason));
    await c.logout();
    const call = calls.find((x) => x.url.endsWith("/auth/logout"))!;
    expect(call.init.method).toBe("POST");
    expect(call.init.credentials).toBe("include");
    expect(new Headers(call.init.headers).get("X-CSRF")).toBe("1");
    expect(assigned).toEqual(["http://localhost:4001/auth/logout/continue?h=abc"]);
    expect(c.session).toEqual({ loggedIn: false });
    expect(ends).toEqual(["logout"]);
  });

  it("ignores login() while the logout navigation is under way", async () => {
    const { c, assigned } = client({
      "/auth/checksession": loggedIn(),
      "/auth/logout": () => json(200, { loggedOut: true, logoutUrl: "http://localhost:4001/auth/logout/continue?h=abc" }),
    });
    await c.checkSession();
    c.on("end", () => c.login()); // a RequireLogin reacting to the end
    await c.logout();
    expect(assigned).toEqual(["http://localhost:4001/auth/logout/continue?h=abc"]);
  });

  it("throws CsrfError and stays logged in when moat refuses", async () => {
    const { c, assigned } = client({
      "/auth/checksession": loggedIn(),
      "/auth/logout": () => json(403, { error: "csrf", message: "refused" }),
    });
    await c.checkSession();
    await expect(c.logout()).rejects.toBeInstanceOf(CsrfError);
    expect(assigned).toEqual([]);
    expect(c.session?.loggedIn).toBe(true);
  });

  it("logs the other tabs out through BroadcastChannel", async () => {
    const routes = {
      "/auth/checksession": loggedIn(),
      "/auth/logout": () => json(200, { loggedOut: true, logoutUrl: "http://localhost:5173/" }),
    };
    const a = client(routes, { channel: "tabs" });
    const b = client(routes, { channel: "tabs" });
    await Promise.all([a.c.checkSession(), b.c.checkSession()]);
    const ended = new Promise<EndReason>((resolve) => b.c.on("end", (e) => resolve(e.reason)));
    await a.c.logout();
    expect(await ended).toBe("other-tab");
    expect(b.c.session).toEqual({ loggedIn: false });
    expect(b.assigned).toEqual([]); // the other tab does not navigate by itself
  });
});

describe("fetch", () => {
  it("adds X-CSRF: 1 and credentials, keeps the caller's headers", async () => {
    const { c, calls } = client({ "/resource/api/recipe": () => json(200, { name: "soup" }) });
    const res = await c.fetch("/resource/api/recipe", { headers: { Accept: "application/json" } });
    expect(await res.json()).toEqual({ name: "soup" });
    const h = new Headers(calls[0]!.init.headers);
    expect(h.get("X-CSRF")).toBe("1");
    expect(h.get("Accept")).toBe("application/json");
    expect(calls[0]!.init.credentials).toBe("include");
    expect(calls[0]!.url).toBe("http://localhost:4001/resource/api/recipe");
  });

  it("does not add the header when csrfHeader is false", async () => {
    const moat = fakeMoat({ "/x": () => json(200, {}) });
    const c = new MoatClient({ fetch: moat.fetch, csrfHeader: false, channel: false });
    await c.fetch("/x");
    expect(new Headers(moat.calls[0]!.init.headers).has("X-CSRF")).toBe(false);
    expect(moat.calls[0]!.url).toBe("/x");
  });

  const cases: [string, Response, abstract new (...a: never[]) => MoatError, Record<string, unknown>][] = [
    ["unauthenticated", json(401, { error: "unauthenticated", message: "log in" }), UnauthenticatedError, { status: 401 }],
    ["csrf", json(403, { error: "csrf", message: "refused" }), CsrfError, { status: 403 }],
    ["forbidden", json(403, { error: "forbidden", message: "no" }), ForbiddenError, {}],
    ["step_up_required code", json(401, { error: "step_up_required", message: "again" }), StepUpRequiredError, {}],
    [
      "RFC 9470 challenge",
      json(401, { error: "invalid_token" }, { "WWW-Authenticate": 'Bearer error="insufficient_user_authentication", acr_values="mfa", max_age="300"' }),
      StepUpRequiredError,
      { acrValues: ["mfa"], maxAge: 300 },
    ],
    ["rate_limited", json(429, { error: "rate_limited", message: "slow" }, { "Retry-After": "3" }), RateLimitedError, { retryAfter: 3 }],
    ["429 without moat's body", new Response("busy", { status: 429, headers: { "Retry-After": "5" } }), RateLimitedError, { retryAfter: 5 }],
    ["unavailable", json(503, { error: "unavailable", message: "retry" }), UnavailableError, { retryAfter: undefined }],
    ["503 without moat's body", new Response("down", { status: 503, headers: { "Retry-After": "9" } }), UnavailableError, { retryAfter: 9 }],
  ];
  for (const [name, res, type, fields] of cases) {
    it(`turns ${name} into ${type.name}`, async () => {
      const { c } = client({ "/api/x": () => res });
      const err = await c.fetch("/api/x").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(type);
      expect(err).toBeInstanceOf(MoatError);
      expect(err).toMatchObject(fields);
    });
  }

  it("returns your API's own errors untouched", async () => {
    const { c } = client({ "/resource/api/missing": () => json(404, { error: "no_such_recipe" }) });
    const res = await c.fetch("/resource/api/missing");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: "no_such_recipe" });
  });

  it("ends the session on unauthenticated, here and in other tabs", async () => {
    const routes = {
      "/auth/checksession": loggedIn(),
      "/api/x": () => json(401, { error: "unauthenticated", message: "log in" }),
    };
    const a = client(routes, { channel: "tabs2" });
    const b = client(routes, { channel: "tabs2" });
    await Promise.all([a.c.checkSession(), b.c.checkSession()]);
    const endA: EndReason[] = [];
    a.c.on("end", (e) => endA.push(e.reason));
    const endB = new Promise<EndReason>((resolve) => b.c.on("end", (e) => resolve(e.reason)));
    await expect(a.c.fetch("/api/x")).rejects.toBeInstanceOf(UnauthenticatedError);
    expect(endA).toEqual(["unauthenticated"]);
    expect(await endB).toBe("other-tab");
  });

  it("json() throws MoatError http for a non-2xx that is not moat's", async () => {
    const { c } = client({ "/api/x": () => json(404, { detail: "gone" }) });
    await expect(c.json("/api/x")).rejects.toMatchObject({ code: "http", status: 404 });
  });
});

describe("expiry", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    vi.setSystemTime(new Date("2030-01-01T00:00:00Z"));
  });

  it("warns before expiresAt, then asks moat and ends the session if it is gone", async () => {
    let live = true;
    const { c, calls } = client({
      "/auth/checksession": () => (live ? json(200, { loggedIn: true, user: { sub: "u1" }, expiresAt: "2030-01-01T00:05:00Z" }) : json(200, { loggedIn: false })),
    });
    const events: string[] = [];
    c.on("expiring", (e) => events.push("expiring " + e.expiresAt.toISOString()));
    c.on("end", (e) => events.push("end " + e.reason));
    await c.checkSession();
    await vi.advanceTimersByTimeAsync(3 * 60_000);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(60_000 + 1);
    expect(events).toEqual(["expiring 2030-01-01T00:05:00.000Z"]);
    live = false;
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    expect(events).toEqual(["expiring 2030-01-01T00:05:00.000Z", "end expired"]);
    expect(calls).toHaveLength(2);
  });

  it("keeps the session when activity extended it", async () => {
    let exp = "2030-01-01T00:01:00Z";
    const { c } = client({ "/auth/checksession": () => json(200, { loggedIn: true, user: { sub: "u1" }, expiresAt: exp }) });
    const ends: string[] = [];
    c.on("end", (e) => ends.push(e.reason));
    await c.checkSession();
    exp = "2030-01-01T00:31:00Z";
    await vi.advanceTimersByTimeAsync(62_000);
    expect(ends).toEqual([]);
    expect(c.session?.expiresAt?.toISOString()).toBe("2030-01-01T00:31:00.000Z");
  });
});

describe("step-up", () => {
  const body = {
    error: "step_up_required",
    message: "this route needs a stronger or more recent login",
    login: "http://localhost:4001/auth/login?acr_values=urn%3Aexample%3Amfa&max_age=900",
  };

  it("reads moat's login URL and its parameters", async () => {
    const { c } = client({ "/resource/api/admin": () => json(401, body) });
    const err = await c.fetch("/resource/api/admin").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StepUpRequiredError);
    expect(err).toMatchObject({ status: 401, loginUrl: body.login, acrValues: ["urn:example:mfa"], maxAge: 900 });
  });

  it("does not end the session: calls to other routes still pass", async () => {
    const { c } = client({ "/auth/checksession": loggedIn(), "/resource/api/admin": () => json(401, body) });
    await c.checkSession();
    await c.fetch("/resource/api/admin").catch(() => {});
    expect(c.session?.loggedIn).toBe(true);
  });

  it("stepUp() logs in at moat with the URL's parameters and returnTo", async () => {
    const { c, assigned } = client({ "/resource/api/admin": () => json(401, body) });
    const err = (await c.fetch("/resource/api/admin").catch((e: unknown) => e)) as StepUpRequiredError;
    c.stepUp(err);
    const u = new URL(assigned[0]!);
    expect(u.origin + u.pathname).toBe("http://localhost:4001/auth/login");
    expect(Object.fromEntries(u.searchParams)).toEqual({ acr_values: "urn:example:mfa", max_age: "900", returnTo: "/orders?x=1#top" });
  });

  it("stepUp() passes prompt=login for an amr rule", async () => {
    const { c, assigned } = client({ "/x": () => json(401, { ...body, login: "http://localhost:4001/auth/login?prompt=login" }) });
    c.stepUp((await c.fetch("/x").catch((e: unknown) => e)) as StepUpRequiredError, { returnTo: "/a" });
    expect(Object.fromEntries(new URL(assigned[0]!).searchParams)).toEqual({ returnTo: "/a", prompt: "login" });
  });

  it("stepUp() without a URL logs in with the challenge's parameters, or prompt=login", () => {
    const { c, assigned } = client({});
    c.stepUp(new StepUpRequiredError(401, "", undefined, ["mfa"], 60), { returnTo: "/admin" });
    expect(Object.fromEntries(new URL(assigned[0]!).searchParams)).toEqual({ returnTo: "/admin", max_age: "60", acr_values: "mfa" });
    c.stepUp(new StepUpRequiredError(401, ""), { returnTo: "/admin" });
    expect(Object.fromEntries(new URL(assigned[1]!).searchParams)).toEqual({ returnTo: "/admin", prompt: "login" });
  });

  it("stepUp() never follows the URL itself: an upstream could send one", async () => {
    const { c, assigned } = client({ "/x": () => json(401, { ...body, login: "https://evil.test/auth/login?acr_values=mfa" }) });
    c.stepUp((await c.fetch("/x").catch((e: unknown) => e)) as StepUpRequiredError, { returnTo: "/a" });
    expect(new URL(assigned[0]!).origin).toBe("http://localhost:4001");
  });
});

describe("parseRetryAfter", () => {
  it("reads seconds and HTTP dates", () => {
    expect(parseRetryAfter("120")).toBe(120);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter("Wed, 01 Jan 2030 00:00:30 GMT", Date.parse("2030-01-01T00:00:00Z"))).toBe(30);
    expect(parseRetryAfter("Wed, 01 Jan 2020 00:00:30 GMT", Date.parse("2030-01-01T00:00:00Z"))).toBe(0);
  });

  it("leaves successful answers alone", async () => {
    expect(await toMoatError(json(200, { error: "unauthenticated" }))).toBeUndefined();
  });
});
