// provider.mjs runs node oidc-provider (OpenID Certified) for moat's
// integration tests. It reads its settings (clients, token lifetimes,
// resources) as JSON from the file named by its first argument, listens on
// 127.0.0.1 on a free port, and prints one line of JSON with its issuer to
// stdout once it accepts requests. It is a test fixture: dev keys, in-memory
// storage, devInteractions (any login, any password).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider, { errors } from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// With tls_cert, https: client certificates are asked for (not required:
// browsers have none) and checked by oidc-provider's mTLS feature.
const server = settings.tls_cert
  ? https.createServer({
    cert: readFileSync(settings.tls_cert), key: readFileSync(settings.tls_key), requestCert: true, rejectUnauthorized: false,
  })
  : http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `${settings.tls_cert ? 'https' : 'http'}://127.0.0.1:${port}`;
  const resources = settings.resources || {};
  const provider = new Provider(issuer, {
    clients: settings.clients,
    ...(settings.jwks ? { jwks: settings.jwks } : {}),
    cookies: { keys: [settings.cookie_key] },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: `${id}@example.test`, email_verified: true, name: id };
        },
      };
    },
    pkce: { required: () => true },
    clientAuthMethods: ['client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
      ...(settings.tls_cert ? ['self_signed_tls_client_auth'] : [])],
    ttl: {
      AccessToken: settings.access_token_ttl || 3600,
      IdToken: 3600,
      RefreshToken: 86400,
      Session: 86400,
      Grant: 86400,
      Interaction: 600,
      AuthorizationCode: 60,
      PushedAuthorizationRequest: 60,
      ClientCredentials: 600,
    },
    // oidc-provider issues refresh tokens only for offline_access, which it
    // honours only with prompt=consent. Tests that do not opt into that
    // strictness get refresh tokens whenever the client may use them, as
    // many providers (Keycloak, Dex with offline_access default) behave.
    async issueRefreshToken(_ctx, client, code) {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      return settings.strict_offline_access ? code.scopes.has('offline_access') : true;
    },
    features: {
      devInteractions: { enabled: true },
      // RFC 9449. Proofs are accepted from every client; clients
      // registered with dpop_bound_access_tokens must send them.
      dPoP: {
        enabled: true,
        nonceSecret: Buffer.from(settings.dpop_nonce_secret, 'hex'),
        requireNonce: () => !!settings.dpop_require_nonce,
      },
      fapi: { enabled: !!settings.fapi2, profile: settings.fapi2 ? '2.0' : undefined },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: !!settings.require_par },
      clientCredentials: { enabled: true },
      // RFC 8705 on the https listener: self-signed client certificates
      // are registered as x5c in the client's jwks; no CA is trusted.
      mTLS: {
        enabled: !!settings.tls_cert,
        certificateBoundAccessTokens: true,
        selfSignedTlsClientAuth: true,
        tlsClientAuth: false,
        getCertificate(ctx) {
          const cert = ctx.req.socket.getPeerX509Certificate?.();
          return cert || undefined;
        },
      },
      // JAR (RFC 9101), as strict as FAPI 2.0 asks: the typ header of
      // RFC 9101 §10.8, and exp, nbf and jti present.
      requestObjects: {
        enabled: !!settings.request_objects,
        requireSignedRequestObject: false,
        async assertJwtClaimsAndHeader(ctx, claims, header) {
          // A pushed request reaches the authorization endpoint as the
          // provider's own unsigned object; the client's was checked at PAR.
          if ('PushedAuthorizationRequest' in ctx.oidc.entities) return;
          if (header.typ !== 'oauth-authz-req+jwt') {
            throw new errors.InvalidRequestObject(`Request Object typ is ${header.typ}`);
          }
          for (const claim of ['exp', 'nbf', 'jti', 'aud', 'iss']) {
            if (claims[claim] === undefined) {
              throw new errors.InvalidRequestObject(`Request Object is missing the '${claim}' claim`);
            }
          }
          if (claims.exp - claims.nbf > 3600) {
            throw new errors.InvalidRequestObject("Request Object 'exp' claim too far from 'nbf' claim");
          }
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => settings.default_resource || undefined,
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, resource) {
          if (!(resource in resources)) throw new errors.InvalidTarget();
          return {
            scope: resources[resource],
            audience: resource,
            accessTokenTTL: settings.access_token_ttl || 3600,
            accessTokenFormat: 'jwt',
          };
        },
      },
    },
    // oidc-provider refuses to call special-use addresses (SSRF guard);
    // the relying parties under test listen on 127.0.0.1, so back-channel
    // logout tokens must be allowed to reach loopback here.
    fetch(url, options) {
      delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
  });
  provider.on('backchannel.error', (_client, err) => {
    process.stderr.write(`backchannel.error: ${err.message}\n`);
  });
  for (const event of ['grant.error', 'authorization.error', 'end_session.error', 'revocation.error', 'pushed_authorization_request.error']) {
    provider.on(event, (_ctx, err) => {
      process.stderr.write(`${event}: ${err.message} ${err.error_detail || ''}\n`);
    });
  }
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`server_error: ${err.stack}\n`);
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// The Go harness closes stdin when the test ends; a killed test must not
// leave the provider running.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
