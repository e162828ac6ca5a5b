// The moat demo SPA. It never sees a token: the BFF keeps them on the
// server and gives the browser one HttpOnly session cookie, which the
// browser sends by itself on same-origin requests.

// call is how every API request to the BFF looks: same-origin credentials
// and the X-CSRF header that moat requires.
async function call(path, method = 'GET') {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { 'X-CSRF': '1', Accept: 'application/json' },
  });
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON
  }
  return { status: res.status, body };
}

// Logging in is a top-level navigation, not a fetch: the browser goes to
// the IdP's login page and comes back to the page it left.
function logIn() {
  const returnTo = location.pathname + location.search + location.hash;
  location.assign('/auth/login?returnTo=' + encodeURIComponent(returnTo));
}

// Logging out ends the session at the BFF, then visits the IdP so it ends
// its own session too, and comes back to the landing page.
async function logOut() {
  const { status, body } = await call('/auth/logout', 'POST');
  location.assign(status === 200 && body?.logoutUrl ? body.logoutUrl : '/');
}

const pages = {
  '#/': {
    title: 'Home',
    path: '/auth/checksession',
    about: 'GET /auth/checksession says whether there is a session and who is logged in. It never returns a token.',
    show: showSession,
  },
  '#/protected': {
    title: 'Protected',
    path: '/api/protected-data',
    about: 'A Go handler inside the BFF (Gateway.Handle): it runs only for a live session and finds the user with moat.User(ctx).',
    show: (data) => el('p', {}, data.message),
  },
  '#/profile': {
    title: 'Profile',
    path: '/auth/userinfo',
    about: "The BFF calls the IdP's UserInfo endpoint with the access token it keeps, and returns the claims.",
    show: ({ userInfo: u }) => el('p', {}, `${u.name} · ${u.email}${u.email_verified ? ' (verified)' : ''} · username ${u.preferred_username}`),
  },
  '#/recipe': {
    title: 'Call API',
    path: '/resource/api/recipe',
    about: "The BFF forwards /resource/api/* to the recipe API with the Bearer token; the API checks it against the IdP's keys. Access tokens are short-lived: call again after a minute and the BFF refreshes it on the way.",
    show: showRecipe,
  },
};

// el builds an element; children are nodes or strings (always text, never HTML).
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

async function render() {
  const page = pages[location.hash] ?? pages['#/'];
  const view = document.getElementById('view');
  view.dataset.state = 'loading';
  view.dataset.seq = Number(view.dataset.seq ?? 0) + 1; // lets tests tell renders apart
  const again = el('button', { type: 'button', textContent: 'Call again' });
  again.addEventListener('click', render);
  view.replaceChildren(
    el('h1', {}, page.title),
    el('p', { className: 'about' }, page.about),
    el('p', {}, el('code', {}, 'GET ' + page.path), ' ', again),
  );

  let status, body;
  try {
    ({ status, body } = await call(page.path));
  } catch (err) {
    [status, body] = [0, { error: 'network', message: String(err) }];
  }
  view.append(el('p', { id: 'status' }, 'HTTP ' + status));
  if (status === 401) {
    const login = el('button', { type: 'button', textContent: 'Log in' });
    login.addEventListener('click', logIn);
    view.append(el('p', { className: 'notice' }, 'You are not logged in. ', login));
  } else if (page.show && status === 200) {
    view.append(page.show(body));
  }
  view.append(el('pre', { id: 'result' }, JSON.stringify(body, null, 2)));
  await updateHeader(page.path === '/auth/checksession' ? body : null);
  view.dataset.status = status;
  view.dataset.state = 'done';
}

function showSession(s) {
  if (!s.loggedIn) return el('p', { className: 'notice' }, 'Not logged in.');
  const until = new Date(s.expiresAt).toLocaleTimeString();
  return el('p', {}, `Logged in as ${s.user.name} (${s.user.email}). The session ends at ${until} unless you keep using it.`);
}

function showRecipe(r) {
  return el('article', { className: 'recipe' },
    el('h2', { id: 'recipe-name' }, r.name),
    el('p', {}, `${r.cuisine} · serves ${r.servings} · ${r.minutes} min`),
    el('ul', {}, ...r.ingredients.map((i) => el('li', {}, i))),
    el('ol', {}, ...r.instructions.map((i) => el('li', {}, i))),
  );
}

// updateHeader shows who is logged in and the matching button.
async function updateHeader(session) {
  const s = session ?? (await call('/auth/checksession')).body ?? {};
  document.getElementById('who').textContent = s.loggedIn ? s.user.name : 'not logged in';
  document.getElementById('login').hidden = !!s.loggedIn;
  document.getElementById('logout').hidden = !s.loggedIn;
  document.body.dataset.loggedIn = !!s.loggedIn;
}

document.getElementById('login').addEventListener('click', logIn);
document.getElementById('logout').addEventListener('click', logOut);
window.addEventListener('hashchange', render);
render();
