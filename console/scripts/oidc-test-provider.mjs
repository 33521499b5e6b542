// A real OpenID Provider for the console's single sign-on test: panva's oidc-provider (a
// certified implementation), configured with one public client (authorization code with
// PKCE, redirect URI = the console) and one user with an email claim. Its ID tokens are
// signed RS256 with a key made at start, their audience the client id. Loopback only.
//
//   node scripts/oidc-test-provider.mjs PORT CLIENT_ID REDIRECT_URI LOGIN EMAIL NAME
//
// Prints "ready <issuer>" once it listens; stops on SIGTERM. The login page is the
// provider's own development one: the configured LOGIN with any password signs in.
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const [port, clientId, redirectUri, login, email, name] = process.argv.slice(2);
if (!name) {
  console.error("usage: oidc-test-provider.mjs PORT CLIENT_ID REDIRECT_URI LOGIN EMAIL NAME");
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const key = { ...privateKey.export({ format: "jwk" }), kid: "test", alg: "RS256", use: "sig" };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      token_endpoint_auth_method: "none",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  pkce: { required: () => true },
  jwks: { keys: [key] },
  cookies: { keys: ["greenlight-test-provider-cookie-key"] },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  // The email the scope asks for goes into the ID token, which is what Greenlight reads.
  conformIdTokenClaims: false,
  findAccount: async (_ctx, sub) =>
    sub === login ? { accountId: sub, claims: async () => ({ sub, email, email_verified: true, name }) } : undefined,
  features: { devInteractions: { enabled: true } },
});
provider.proxy = false;
const server = provider.listen(Number(port), "127.0.0.1", () => console.log(`ready ${issuer}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
