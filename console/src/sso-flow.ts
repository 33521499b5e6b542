// The single sign-on flow, loaded on demand (see sso.ts): discovery, PKCE, the code exchange.
import * as oauth from "oauth4webapi";
import { PENDING, type SsoConfig } from "./sso";

type Pending = { verifier: string; state: string; nonce: string; back: string };

// Where the provider sends the browser back: the console's own page.
const redirectUri = () => `${window.location.origin}/`;

async function discover(config: SsoConfig): Promise<oauth.AuthorizationServer> {
  // An http issuer is the administrator's choice (a provider on loopback, say): allowed then only.
  const response = await oauth.discoveryRequest(config.issuer, {
    algorithm: "oidc",
    [oauth.allowInsecureRequests]: config.issuer.protocol === "http:",
  });
  return oauth.processDiscoveryResponse(config.issuer, response);
}

/** Off to the identity provider; the browser comes back to the console with a code. */
export async function startSignIn(config: SsoConfig): Promise<void> {
  const server = await discover(config);
  if (!server.authorization_endpoint) throw new Error("The identity provider names no authorization endpoint.");
  const pending: Pending = {
    verifier: oauth.generateRandomCodeVerifier(),
    state: oauth.generateRandomState(),
    nonce: oauth.generateRandomNonce(),
    back: window.location.hash,
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(server.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: config.clientId,
    redirect_uri: redirectUri(),
    response_type: "code",
    scope: config.scopes,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(pending.verifier),
    code_challenge_method: "S256",
  }).toString();
  window.location.assign(url.href);
}

/** The provider's answer turned into an ID token; the code and state leave the address bar. */
export async function finishSignIn(config: SsoConfig): Promise<string> {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? "null") as Pending | null;
  sessionStorage.removeItem(PENDING);
  const current = new URL(window.location.href);
  window.history.replaceState(null, "", `${window.location.pathname}${pending?.back ?? ""}`);
  if (!pending) throw new Error("This sign-in was not started here; sign in again.");
  const server = await discover(config);
  const client: oauth.Client = { client_id: config.clientId };
  const insecure = { [oauth.allowInsecureRequests]: config.issuer.protocol === "http:" };
  const params = oauth.validateAuthResponse(server, client, current, pending.state);
  const response = await oauth.authorizationCodeGrantRequest(
    server,
    client,
    oauth.None(),
    params,
    redirectUri(),
    pending.verifier,
    insecure,
  );
  const result = await oauth.processAuthorizationCodeResponse(server, client, response, {
    expectedNonce: pending.nonce,
    requireIdToken: true,
  });
  if (!result.id_token) throw new Error("The identity provider sent no ID token.");
  return result.id_token;
}

/** A failure of the flow in plain words, with the provider's or the library's code. */
export function ssoProblem(error: unknown): string {
  if (error instanceof oauth.AuthorizationResponseError) {
    return `The identity provider refused: ${error.error_description || error.error} (${error.error})`;
  }
  if (error instanceof oauth.ResponseBodyError) {
    return `The identity provider refused: ${error.error_description || error.error} (${error.error})`;
  }
  if (error instanceof oauth.OperationProcessingError) return `Single sign-on failed: ${error.message} (${error.code})`;
  if (error instanceof TypeError) return "The identity provider could not be reached; try again. (NETWORK)";
  return `Single sign-on failed: ${error instanceof Error ? error.message : String(error)}`;
}
