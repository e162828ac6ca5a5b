import { useEffect, useState } from "react";
import { RequireLogin, useMoatFetch, useSession } from "@moat-bff/react";
import { UnauthenticatedError } from "@moat-bff/client";

// A hash router is enough for an example: #/, #/profile, #/recipe.
function useRoute() {
  const [route, setRoute] = useState(location.hash.slice(1) || "/");
  useEffect(() => {
    const on = () => setRoute(location.hash.slice(1) || "/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function App() {
  const { status, session, endReason, login, logout } = useSession();
  const route = useRoute();
  return (
    <main data-status={status}>
      <header>
        <h1>moat example</h1>
        <nav>
          <a href="#/">Home</a> · <a href="#/profile">Profile</a> · <a href="#/recipe">Call API</a>
        </nav>
        {status === "loggedIn" && (
          <p>
            Logged in as <b id="who">{String(session.user?.name ?? session.user?.sub)}</b>{" "}
            <button id="logout" onClick={() => logout()}>Log out</button>
          </p>
        )}
        {status === "loggedOut" && (
          <p>
            Logged out{endReason ? ` (${endReason})` : ""}.{" "}
            <button id="login" onClick={() => login()}>Log in</button>
          </p>
        )}
        {status === "error" && <p id="error">moat is not reachable at {import.meta.env.MOAT_URL}. Is `moat demo` running?</p>}
      </header>
      {route === "/" && <Home />}
      {route === "/profile" && (
        <RequireLogin fallback={<p>Checking your session…</p>}>
          <Profile />
        </RequireLogin>
      )}
      {route === "/recipe" && (
        <RequireLogin fallback={<p>Checking your session…</p>}>
          <Recipe />
        </RequireLogin>
      )}
    </main>
  );
}

function Home() {
  const { session } = useSession();
  return (
    <section id="home">
      <p>This SPA holds no token. It asks moat who is logged in:</p>
      <pre>{JSON.stringify(session ?? null, null, 2)}</pre>
    </section>
  );
}

function Profile() {
  const { status, data, error } = useMoatFetch("/auth/userinfo");
  return (
    <section id="profile" data-state={status}>
      <h2>Profile (GET /auth/userinfo)</h2>
      {status === "done" && <p id="email">{data.userInfo.email}</p>}
      {error && <ErrorText error={error} />}
    </section>
  );
}

function Recipe() {
  const { status, data, error, reload } = useMoatFetch("/resource/api/recipe");
  return (
    <section id="recipe" data-state={status}>
      <h2>Call API (GET /resource/api/recipe, with the Bearer token moat adds)</h2>
      {status === "done" && (
        <>
          <p id="recipe-name">{data.name}</p>
          <ul>{data.ingredients?.map((i) => <li key={i}>{i}</li>)}</ul>
        </>
      )}
      {error && <ErrorText error={error} />}
      <button onClick={reload}>Call again</button>
    </section>
  );
}

function ErrorText({ error }) {
  if (error instanceof UnauthenticatedError) return <p className="error">Your session ended. Log in again.</p>;
  return <p className="error">{error.name}: {error.message}</p>;
}
