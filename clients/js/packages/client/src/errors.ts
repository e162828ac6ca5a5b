/**
 * Typed errors for moat's JSON error answers. moat writes every error it
 * produces as `{"error": "<code>", "message": "<safe text>"}` with a stable
 * code (internal/httperr); answers from your upstream API pass through
 * untouched and are not turned into these errors unless they use moat's
 * codes.
 */

/** The codes this package turns into typed errors. */
export type MoatErrorCode =
  | "unauthenticated"
  | "forbidden"
  | "step_up_required"
  | "csrf"
  | "rate_limited"
  | "unavailable";

/** A failure moat reported. `status` is the HTTP status, `code` moat's code. */
export class MoatError extends Error {
  readonly status: number;
  readonly code: string;
  readonly response: Response | undefined;

  constructor(code: string, status: number, message: string, response?: Response) {
    super(message || code);
    this.name = "MoatError";
    this.code = code;
    this.status = status;
    this.response = response;
  }
}

/** 401 unauthenticated: no live session. Log in again. */
export class UnauthenticatedError extends MoatError {
  constructor(status: number, message: string, response?: Response) {
    super("unauthenticated", status, message, response);
    this.name = "UnauthenticatedError";
  }
}

/** 403 forbidden: logged in, but not allowed. */
export class ForbiddenError extends MoatError {
  constructor(status: number, message: string, response?: Response) {
    super("forbidden", status, message, response);
    this.name = "ForbiddenError";
  }
}

/**
 * step_up_required: the call needs a stronger or fresher login (moat's
 * routes[].require, RFC 9470). `loginUrl` is moat's /auth/login URL whose
 * parameters meet every unmet rule; `MoatClient.stepUp(err)` goes there.
 */
export class StepUpRequiredError extends MoatError {
  readonly loginUrl: string | undefined;
  readonly acrValues: string[] | undefined;
  readonly maxAge: number | undefined;
  readonly prompt: "login" | undefined;

  constructor(status: number, message: string, response?: Response, acrValues?: string[], maxAge?: number, loginUrl?: string, prompt?: "login") {
    super("step_up_required", status, message, response);
    this.name = "StepUpRequiredError";
    this.loginUrl = loginUrl;
    this.acrValues = acrValues;
    this.maxAge = maxAge;
    this.prompt = prompt;
  }
}

/** 403 csrf: the request failed moat's CSRF check (a missing X-CSRF header, a foreign origin). */
export class CsrfError extends MoatError {
  constructor(status: number, message: string, response?: Response) {
    super("csrf", status, message, response);
    this.name = "CsrfError";
  }
}

/** 429 rate_limited. `retryAfter` is Retry-After in seconds, when moat sent it. */
export class RateLimitedError extends MoatError {
  readonly retryAfter: number | undefined;

  constructor(status: number, message: string, response?: Response, retryAfter?: number) {
    super("rate_limited", status, message, response);
    this.name = "RateLimitedError";
    this.retryAfter = retryAfter;
  }
}

/**
 * 503 unavailable: the IdP or the session store is down. The session is
 * still there; retry later (`retryAfter` seconds, when sent).
 */
export class UnavailableError extends MoatError {
  readonly retryAfter: number | undefined;

  constructor(status: number, message: string, response?: Response, retryAfter?: number) {
    super("unavailable", status, message, response);
    this.name = "UnavailableError";
    this.retryAfter = retryAfter;
  }
}

/** Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

// RFC 9470 §3: WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="...", max_age=...
function stepUpParams(header: string | null): { acr?: string[]; maxAge?: number } | undefined {
  if (!header || !/error="insufficient_user_authentication"/.test(header)) return undefined;
  const acr = /acr_values="([^"]*)"/.exec(header)?.[1];
  const maxAge = /max_age="?(\d+)"?/.exec(header)?.[1];
  return {
    acr: acr ? acr.split(" ").filter(Boolean) : undefined,
    maxAge: maxAge !== undefined ? Number(maxAge) : undefined,
  };
}

/**
 * toMoatError returns the typed error for a failed response, or undefined
 * when the answer is not one of moat's (your API's own 404, say). It reads
 * the body of a clone, so the caller's response stays readable.
 */
export async function toMoatError(res: Response): Promise<MoatError | undefined> {
  if (res.ok) return undefined;
  let code = "";
  let message = "";
  let login: string | undefined;
  if ((res.headers.get("Content-Type") ?? "").includes("json")) {
    try {
      const body: unknown = await res.clone().json();
      if (body !== null && typeof body === "object") {
        const b = body as Record<string, unknown>;
        if (typeof b.error === "string") code = b.error;
        if (typeof b.message === "string") message = b.message;
        if (typeof b.login === "string") login = b.login;
      }
    } catch {
      // not JSON after all: decided by status below
    }
  }
  const retryAfter = parseRetryAfter(res.headers.get("Retry-After"));
  const stepUp = stepUpParams(res.headers.get("WWW-Authenticate"));
  if (code === "step_up_required" || stepUp) {
    let acr = stepUp?.acr;
    let maxAge = stepUp?.maxAge;
    let prompt: "login" | undefined;
    if (login) {
      try {
        const q = new URL(login, "http://moat.invalid").searchParams;
        acr ??= q.get("acr_values")?.split(" ").filter(Boolean);
        const m = q.get("max_age");
        if (maxAge === undefined && m !== null && /^\d+$/.test(m)) maxAge = Number(m);
        if (q.get("prompt") === "login") prompt = "login";
      } catch {
        login = undefined;
      }
    }
    return new StepUpRequiredError(res.status, message, res, acr, maxAge, login, prompt);
  }
  switch (code) {
    case "unauthenticated":
      return new UnauthenticatedError(res.status, message, res);
    case "forbidden":
      return new ForbiddenError(res.status, message, res);
    case "csrf":
      return new CsrfError(res.status, message, res);
    case "rate_limited":
      return new RateLimitedError(res.status, message, res, retryAfter);
    case "unavailable":
      return new UnavailableError(res.status, message, res, retryAfter);
  }
  // moat's limiters and outage answers carry these statuses too.
  if (res.status === 429) return new RateLimitedError(res.status, message, res, retryAfter);
  if (res.status === 503) return new UnavailableError(res.status, message, res, retryAfter);
  return undefined;
}
