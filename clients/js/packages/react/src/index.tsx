/**
 * @moat-bff/react: React bindings for @moat-bff/client. MoatProvider owns
 * one MoatClient and checks the session on mount; useSession reads it,
 * useMoatFetch calls APIs through moat, RequireLogin guards a subtree.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import type { ReactNode } from "react";
import { MoatClient } from "@moat-bff/client";
import type { EndReason, LoginOptions, MoatClientOptions, Session } from "@moat-bff/client";

export { MoatClient } from "@moat-bff/client";
export type { LoginOptions, Session } from "@moat-bff/client";

/** What useSession returns. */
export interface SessionState {
  /** "loading" until the first /auth/checksession answer; "error" if moat could not be reached. */
  status: "loading" | "loggedIn" | "loggedOut" | "error";
  session: Session | undefined;
  /** Why the last session ended, if one did while this page was open. */
  endReason: EndReason | undefined;
  error: unknown;
  login: (opts?: LoginOptions) => void;
  logout: () => Promise<void>;
  refresh: () => Promise<void>;
  client: MoatClient;
}

const Ctx = createContext<SessionState | null>(null);

export interface MoatProviderProps extends MoatClientOptions {
  children?: ReactNode;
  /** Use this client instead of making one (tests, or sharing it outside React). */
  client?: MoatClient;
}

/** MoatProvider makes one MoatClient for its subtree and keeps the session state. */
export function MoatProvider({ children, client: given, ...opts }: MoatProviderProps) {
  // One client for the provider's lifetime; options are read once.
  const optsRef = useRef(opts);
  const client = useMemo(() => given ?? new MoatClient(optsRef.current), [given]);
  const [session, setSession] = useState<Session | undefined>(client.session);
  const [endReason, setEndReason] = useState<EndReason | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);

  const refresh = useCallback(async () => {
    try {
      await client.checkSession();
      setError(undefined);
    } catch (e) {
      setError(e);
    }
  }, [client]);

  const login = useCallback((o?: LoginOptions) => client.login(o), [client]);
  const logout = useCallback(() => client.logout(), [client]);

  useEffect(() => {
    const offChange = client.on("change", (s) => setSession(s));
    const offEnd = client.on("end", ({ reason }) => setEndReason(reason));
    void refresh();
    return () => {
      offChange();
      offEnd();
      if (!given) client.close();
    };
  }, [client, given, refresh]);

  const value = useMemo<SessionState>(
    () => ({
      status: session === undefined ? (error !== undefined ? "error" : "loading") : session.loggedIn ? "loggedIn" : "loggedOut",
      session,
      endReason,
      error,
      login,
      logout,
      refresh,
      client,
    }),
    [session, endReason, error, client, refresh, login, logout],
  );
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

/** The session state of the nearest MoatProvider. */
export function useSession(): SessionState {
  const v = useContext(Ctx);
  if (!v) throw new Error("useSession must be used inside <MoatProvider>");
  return v;
}

/** The state of one call made by useMoatFetch. */
export interface FetchState<T> {
  status: "idle" | "loading" | "done" | "error";
  data: T | undefined;
  /** A MoatError subclass for moat's answers (UnauthenticatedError, CsrfError, ...), else what fetch threw. */
  error: unknown;
  /** Runs the call again. */
  reload: () => void;
}

/**
 * useMoatFetch GETs path through moat (cookie, X-CSRF: 1) and parses the
 * JSON answer. A null path skips the call. It calls again when path
 * changes, and drops answers that arrive after the component moved on.
 */
export function useMoatFetch<T = unknown>(path: string | null, init?: RequestInit): FetchState<T> {
  const { client } = useSession();
  const [state, setState] = useState<Omit<FetchState<T>, "reload">>({ status: "idle", data: undefined, error: undefined });
  const [n, setN] = useState(0);
  const initRef = useRef(init);
  initRef.current = init;
  useEffect(() => {
    if (path === null) {
      setState({ status: "idle", data: undefined, error: undefined });
      return;
    }
    const ac = new AbortController();
    setState((s) => ({ ...s, status: "loading", error: undefined }));
    client
      .json<T>(path, { ...initRef.current, signal: ac.signal })
      .then((data) => {
        if (!ac.signal.aborted) setState({ status: "done", data, error: undefined });
      })
      .catch((error: unknown) => {
        if (!ac.signal.aborted) setState({ status: "error", data: undefined, error });
      });
    return () => ac.abort();
  }, [client, path, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return { ...state, reload };
}

export interface RequireLoginProps {
  children?: ReactNode;
  /** Shown while the session is checked. */
  fallback?: ReactNode;
  /** Shown to a logged-out user instead of sending them to log in. */
  loggedOut?: ReactNode;
  /** Options for the automatic login (returnTo defaults to this page). */
  loginOptions?: LoginOptions;
}

/**
 * RequireLogin renders its children only for a logged-in user. A
 * logged-out user is sent to moat's login (and comes back here), or sees
 * `loggedOut` when given.
 */
export function RequireLogin({ children, fallback = null, loggedOut, loginOptions }: RequireLoginProps) {
  const { status, login } = useSession();
  const redirect = status === "loggedOut" && loggedOut === undefined;
  useEffect(() => {
    if (redirect) login(loginOptions);
    // loginOptions is read when the redirect happens
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [redirect, login]);
  if (status === "loggedIn") return <>{children}</>;
  if (status === "loggedOut" && loggedOut !== undefined) return <>{loggedOut}</>;
  return <>{fallback}</>;
}
