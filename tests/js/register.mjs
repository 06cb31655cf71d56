// Software registering its own key with a library no one here wrote (panva's oauth4webapi),
// the way a partner's agent would: discover the authorization server, register at the
// registration endpoint its metadata names (RFC 7591, with the registration token as the
// initial access token), then get a token with the client-credentials grant.
//
//   REGISTRATION_TOKEN=kcrt_… node tests/js/register.mjs ISSUER [secret|private_key_jwt] [SCOPE]
//
// ISSUER is the realm (e.g. http://127.0.0.1:8180/realms/portal). Prints one JSON object:
// what discovery said, what the registration answered (no secrets), and the token's claims.
// On a refusal it prints the error and exits 1. tests/test_registration.py runs it.
import * as oauth from "oauth4webapi";

const [issuerText, method = "secret", scope] = process.argv.slice(2);
const initialAccessToken = process.env.REGISTRATION_TOKEN; // not in argv: ps shows argv
if (!issuerText || !initialAccessToken || !["secret", "private_key_jwt"].includes(method)) {
  console.error("usage: REGISTRATION_TOKEN=kcrt_… node register.mjs ISSUER [secret|private_key_jwt] [SCOPE]");
  process.exit(2);
}

// oauth4webapi refuses plain http unless told otherwise. The tests run Keycloak and the
// portal on loopback without TLS, so they say so here; a real client leaves this out.
const insecure = { [oauth.allowInsecureRequests]: true };

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
}

async function main() {
  const issuer = new URL(issuerText);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...insecure }),
  );

  const metadata = {
    client_name: `oauth4webapi ${method}`,
    grant_types: ["client_credentials"],
    contacts: ["ops@example.com"],
  };
  let clientAuth;
  if (method === "private_key_jwt") {
    // A key pair made here; only its public half leaves this process, as a JWKS.
    const { privateKey, publicKey } = await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["sign", "verify"],
    );
    const kid = `agent-${Date.now()}`;
    const jwk = await crypto.subtle.exportKey("jwk", publicKey);
    delete jwk.key_ops;
    delete jwk.ext;
    metadata.token_endpoint_auth_method = "private_key_jwt";
    metadata.jwks = { keys: [{ ...jwk, kid, alg: "ES256", use: "sig" }] };
    clientAuth = oauth.PrivateKeyJwt({ key: privateKey, kid });
  } else {
    metadata.token_endpoint_auth_method = "client_secret_basic";
  }

  const registered = await oauth.processDynamicClientRegistrationResponse(
    await oauth.dynamicClientRegistrationRequest(as, metadata, { initialAccessToken, ...insecure }),
  );
  clientAuth ??= oauth.ClientSecretBasic(registered.client_secret);

  const client = { client_id: registered.client_id };
  const parameters = new URLSearchParams(scope ? { scope } : {});
  const token = await oauth.processClientCredentialsResponse(
    as,
    client,
    await oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, insecure),
  );

  const { client_secret, registration_access_token, ...said } = registered;
  console.log(
    JSON.stringify({
      discovered: { issuer: as.issuer, registration_endpoint: as.registration_endpoint },
      registered: {
        ...said,
        got_client_secret: client_secret !== undefined,
        got_registration_access_token: registration_access_token !== undefined,
      },
      token: { token_type: token.token_type, expires_in: token.expires_in, scope: token.scope },
      claims: claimsOf(token.access_token),
    }),
  );
}

// What the server refused, as RFC 6749/7591 say it: oauth4webapi throws a ResponseBodyError
// for an error body, and a WWWAuthenticateChallengeError (body unread) for a 401 or 403 with a
// WWW-Authenticate challenge, which is what a bad registration token gets.
async function refusal(error) {
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    const body = await error.response.json().catch(() => ({}));
    const challenge = error.cause?.[0]?.parameters ?? {};
    return {
      error: body.error ?? challenge.error,
      error_description: body.error_description,
      status: error.status,
    };
  }
  if (error instanceof oauth.ResponseBodyError) {
    return { error: error.error, error_description: error.error_description, status: error.status };
  }
  return { error: error.code ?? error.name, error_description: error.message };
}

main().catch(async (error) => {
  console.log(JSON.stringify(await refusal(error)));
  process.exit(1);
});
