// Single sign-on in the browser: OpenID Connect's authorization code flow with PKCE, the
// provider discovered from its issuer. The console is a public client (no secret); the
// issuer, its client id and the scopes are rendered into the page by the server (meta tags
// from GREENLIGHT_OIDC_ISSUER, GREENLIGHT_OIDC_CLIENT_ID, GREENLIGHT_OIDC_SCOPES). The ID
// token it gets back is the bearer credential Greenlight checks (issuer, audience = the
// client id, signature, expiry), exactly as any other JWT. The flow itself (sso-flow.ts,
// with oauth4webapi) loads only when a sign-in starts or comes back.

export type SsoConfig = { issuer: URL; clientId: string; scopes: string };

const meta = (name: string) => document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content || "";

export function ssoConfig(): SsoConfig | null {
  const issuer = meta("greenlight-oidc-issuer");
  const clientId = meta("greenlight-oidc-client-id");
  if (!issuer || !clientId) return null;
  return { issuer: new URL(issuer), clientId, scopes: meta("greenlight-oidc-scopes") || "openid email profile" };
}

// The flow's secrets wait in this tab only, for the provider to send the browser back.
export const PENDING = "greenlight.sso.pending";

/** True when this page load is the provider sending the browser back. */
export function isReturning(): boolean {
  const params = new URLSearchParams(window.location.search);
  return (params.has("code") || params.has("error")) && params.has("state") && sessionStorage.getItem(PENDING) !== null;
}
