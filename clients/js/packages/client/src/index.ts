/**
 * @moat-bff/client: the browser side of moat, a Backend-for-Frontend. The
 * SPA never holds a token: it asks moat whether it is logged in, navigates
 * to moat to log in and out, and calls APIs through moat with a cookie.
 */
export { MoatClient } from "./client.js";
export type { EndReason, LoginOptions, MoatClientOptions, MoatEvents, Navigator, Session } from "./client.js";
export {
  CsrfError,
  ForbiddenError,
  MoatError,
  RateLimitedError,
  StepUpRequiredError,
  UnauthenticatedError,
  UnavailableError,
  parseRetryAfter,
  toMoatError,
} from "./errors.js";
export type { MoatErrorCode } from "./errors.js";
