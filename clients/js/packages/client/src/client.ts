import { MoatError, UnauthenticatedError, toMoatError } from "./errors.js";
import type { StepUpRequiredError } from "./errors.js";

/** The session as GET /auth/checksession reports it. Never a token. */
export interface Session {
  loggedIn: boolean;
  /** The ID token's claims about the user (sub, name, email, ...). */
  user?: Record<string, unknown>;
  /** When the session ends if nothing else happens (idle or absolute timeout). */
  expiresAt?: Date;
}

/** Why a session ended, as the "end" event reports it. */
export type EndReason = "logout" | "other-tab" | "expired" | "unauthenticated";

/** Options of `login()`: the re-authentication parameters moat's /auth/login accepts. */
export interface LoginOptions {
  /** Where to come back to after login: a path, or a URL on moat's frontend_url origin. Default: this page. */
  returnTo?: string;
  /** "login" forces the login form; "none" checks silently (failures come back as ?login_error=). */
  prompt?: "login" | "none";
  /** Maximum age in seconds of the user's authentication (OIDC max_age). */
  maxAge?: number;
  /** ACR values; each must be listed in moat's oidc.acr_values. */
  acrValues?: string[];
}

/** What the client needs from `window.location`; replaceable in tests. */
export interface Navigator {
  assign(url: string): void;
  /** The current page, for the default returnTo. */
  href(): string;
}

export interface MoatClientOptions {
  /**
   * moat's origin, e.g. "http://localhost:4001"; "" (default) when moat serves the SPA or a dev proxy forwards to it;
   * the frontend's path, e.g. "/staff", when moat mounts several frontends at paths of one origin.
   */
  baseUrl?: string;
  /** Send X-CSRF: 1 (moat's default csrf.mode: header). Default true. */
  csrfHeader?: boolean;
  /** The "expiring" event fires this long before expiresAt. Default 60 000 ms. */
  expiryWarningMs?: number;
  /** BroadcastChannel name for cross-tab sync; false disables it. Default "moat-bff:" + baseUrl. */
  channel?: string | false;
  fetch?: typeof fetch;
  navigator?: Navigator;
}

export interface MoatEvents {
  /** The session state changed (also after the first check). */
  change: Session;
  /** The session ended: here, in another tab, by expiry, or because moat answered unauthenticated. */
  end: { reason: EndReason };
  /** The session will end at expiresAt unless the user is active; fires expiryWarningMs before. */
  expiring: { expiresAt: Date };
}

type Listener<T> = (detail: T) => void;

type Message = { type: "changed"; loggedIn: boolean };

const MAX_TIMER = 2 ** 31 - 1;

/**
 * MoatClient is an SPA's side of moat: session state, login and logout
 * navigations, and a fetch that passes moat's CSRF check and turns its
 * errors into typed ones. Tokens never reach it; the session is an
 * HttpOnly cookie the browser sends with `credentials: "include"`.
 */
export class MoatClient {
  readonly baseUrl: string;
  private readonly csrf: boolean;
  private readonly warnMs: number;
  private readonly doFetch: typeof fetch;
  private readonly nav: Navigator;
  private readonly bc: BroadcastChannel | undefined;
  private readonly listeners: { [K in keyof MoatEvents]: Set<Listener<MoatEvents[K]>> } = {
    change: new Set(),
    end: new Set(),
    expiring: new Set(),
  };
  private current: Session | undefined;
  private timers: ReturnType<typeof setTimeout>[] = [];
  private checking: Promise<Session> | undefined;
  private leaving = false; // a logout navigation is under way

  constructor(opts: MoatClientOptions = {}) {
    this.baseUrl = (opts.baseUrl ?? "").replace(/\/+$/, "");
    this.csrf = opts.csrfHeader ?? true;
    this.warnMs = opts.expiryWarningMs ?? 60_000;
    this.doFetch = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.nav = opts.navigator ?? {
      assign: (url) => globalThis.location.assign(url),
      href: () => globalThis.location.href,
    };
    const name = opts.channel === undefined ? "moat-bff:" + this.baseUrl : opts.channel;
    if (name !== false && typeof BroadcastChannel !== "undefined") {
      this.bc = new BroadcastChannel(name);
      this.bc.onmessage = (ev: MessageEvent<Message>) => this.onMessage(ev.data);
    }
  }

  /** The last known session, or undefined before the first check. */
  get session(): Session | undefined {
    return this.current;
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof MoatEvents>(type: K, fn: Listener<MoatEvents[K]>): () => void {
    this.listeners[type].add(fn);
    return () => {
      this.listeners[type].delete(fn);
    };
  }

  /** Asks moat for the session (GET /auth/checksession) and updates the state. Concurrent calls share one request. */
  checkSession(): Promise<Session> {
    this.checking ??= this.fetchSession().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async fetchSession(): Promise<Session> {
    const res = await this.doFetch(this.baseUrl + "/auth/checksession", {
      credentials: "include",
      headers: { Accept: "application/json" },
    });
    if (!res.ok) {
      throw (await toMoatError(res)) ?? new MoatError("http", res.status, `checksession answered ${res.status}`, res);
    }
    const body = (await res.json()) as { loggedIn?: unknown; user?: unknown; expiresAt?: unknown };
    const s: Session = { loggedIn: body.loggedIn === true };
    if (s.loggedIn) {
      if (body.user && typeof body.user === "object") s.user = body.user as Record<string, unknown>;
      if (typeof body.expiresAt === "string" && !Number.isNaN(Date.parse(body.expiresAt))) {
        s.expiresAt = new Date(body.expiresAt);
      }
    }
    this.update(s, "expired");
    return s;
  }

  /** The /auth/login URL for opts. */
  loginUrl(opts: LoginOptions = {}): string {
    const q = new URLSearchParams();
    q.set("returnTo", opts.returnTo ?? this.here());
    if (opts.prompt) q.set("prompt", opts.prompt);
    if (opts.maxAge !== undefined) {
      if (!Number.isInteger(opts.maxAge) || opts.maxAge < 0) throw new RangeError("maxAge must be a non-negative integer of seconds");
      q.set("max_age", String(opts.maxAge));
    }
    if (opts.acrValues?.length) q.set("acr_values", opts.acrValues.join(" "));
    return this.baseUrl + "/auth/login?" + q.toString();
  }

  /**
   * Navigates to moat's login, which returns to opts.returnTo (default:
   * this page). Ignored while logout() is navigating away, so a component
   * that reacts to the ended session cannot log the user straight back in.
   */
  login(opts: LoginOptions = {}): void {
    if (this.leaving) return;
    this.nav.assign(this.loginUrl(opts));
  }

  /**
   * Answers a StepUpRequiredError: logs in again at this client's moat with
   * the parameters the error names (acr_values, max_age, prompt; from the
   * login URL moat sent, or an RFC 9470 challenge), returning to returnTo
   * (default: this page). The URL itself is never followed: an upstream
   * API can answer the same JSON, and must not pick where the browser goes.
   * With no parameter at all it asks for a fresh login (prompt=login).
   */
  stepUp(err: StepUpRequiredError, opts: { returnTo?: string } = {}): void {
    const o: LoginOptions = {};
    if (opts.returnTo !== undefined) o.returnTo = opts.returnTo;
    if (err.acrValues?.length) o.acrValues = err.acrValues;
    if (err.maxAge !== undefined) o.maxAge = err.maxAge;
    if (err.prompt || (!o.acrValues && o.maxAge === undefined)) o.prompt = "login";
    this.login(o);
  }

  /**
   * Ends the session: POST /auth/logout, tells the other tabs, then follows
   * moat's answer, a one-time URL that leads to the IdP's end-session page
   * and back to the SPA.
   */
  async logout(): Promise<void> {
    const res = await this.doFetch(this.baseUrl + "/auth/logout", {
      method: "POST",
      credentials: "include",
      headers: this.headers(undefined),
    });
    const err = await toMoatError(res);
    if (err) throw err;
    if (!res.ok) throw new MoatError("http", res.status, `logout answered ${res.status}`, res);
    const body = (await res.json()) as { logoutUrl?: unknown };
    if (typeof body.logoutUrl === "string") {
      this.leaving = true;
      this.nav.assign(body.logoutUrl);
    }
    this.update({ loggedIn: false }, "logout");
  }

  /**
   * fetch for moat's routes: path is relative to baseUrl (or absolute). It
   * sends the session cookie and X-CSRF: 1, and throws a typed MoatError
   * for moat's error answers; other answers, errors of your API included,
   * come back as they are. An unauthenticated answer ends the session here
   * and in the other tabs.
   */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const url = /^[a-z][a-z0-9+.-]*:/i.test(path) ? path : this.baseUrl + path;
    const res = await this.doFetch(url, { ...init, credentials: "include", headers: this.headers(init.headers) });
    const err = await toMoatError(res);
    if (err instanceof UnauthenticatedError && this.current?.loggedIn) {
      this.update({ loggedIn: false }, "unauthenticated");
    }
    if (err) throw err;
    return res;
  }

  /** fetch, then the JSON body; a non-2xx answer that is not moat's throws a MoatError with code "http". */
  async json<T = unknown>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await this.fetch(path, init);
    if (!res.ok) throw new MoatError("http", res.status, `${path} answered ${res.status}`, res);
    return (await res.json()) as T;
  }

  /** Stops timers and the BroadcastChannel. */
  close(): void {
    this.clearTimers();
    this.bc?.close();
  }

  private headers(h: HeadersInit | undefined): Headers {
    const headers = new Headers(h);
    if (this.csrf && !headers.has("X-CSRF")) headers.set("X-CSRF", "1");
    return headers;
  }

  private here(): string {
    try {
      const u = new URL(this.nav.href());
      return u.pathname + u.search + u.hash;
    } catch {
      return "/";
    }
  }

  private update(s: Session, endReason: EndReason, broadcast = true): void {
    const was = this.current;
    this.current = s;
    this.schedule(s);
    if (broadcast && was !== undefined && was.loggedIn !== s.loggedIn) this.post({ type: "changed", loggedIn: s.loggedIn });
    if (was?.loggedIn && !s.loggedIn) this.emit("end", { reason: endReason });
    if (!was || was.loggedIn !== s.loggedIn || was.user?.sub !== s.user?.sub || was.expiresAt?.getTime() !== s.expiresAt?.getTime()) {
      this.emit("change", s);
    }
  }

  // At expiresAt the session may have been extended by activity (the idle
  // timeout slides), so the client asks moat again instead of assuming.
  private schedule(s: Session): void {
    this.clearTimers();
    if (!s.loggedIn || !s.expiresAt) return;
    const expiresAt = s.expiresAt;
    const left = expiresAt.getTime() - Date.now();
    const warnIn = left - this.warnMs;
    if (warnIn > 0 && warnIn < MAX_TIMER) {
      this.timers.push(setTimeout(() => this.emit("expiring", { expiresAt }), warnIn));
    } else if (warnIn <= 0 && left > 0) {
      this.timers.push(setTimeout(() => this.emit("expiring", { expiresAt }), 0));
    }
    if (left < MAX_TIMER) {
      this.timers.push(
        setTimeout(() => {
          this.checkSession().catch(() => {
            // moat unreachable: keep the state; the next call tells.
          });
        }, Math.max(0, left) + 1000),
      );
    }
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  private onMessage(m: Message): void {
    if (m?.type !== "changed") return;
    if (!m.loggedIn) {
      if (this.current?.loggedIn) this.update({ loggedIn: false }, "other-tab", false);
      return;
    }
    if (!this.current?.loggedIn) {
      this.checkSession().catch(() => {});
    }
  }

  private post(m: Message): void {
    this.bc?.postMessage(m);
  }

  private emit<K extends keyof MoatEvents>(type: K, detail: MoatEvents[K]): void {
    for (const fn of [...this.listeners[type]]) {
      try {
        fn(detail);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}

