// A real OpenID Connect provider (npm oidc-provider) on 127.0.0.1:<port>, for
// the sign-in tests: one confidential client, accounts read from a JSON file at
// every lookup (so a test can change a user's groups between two sign-ins), and
// the package's own development login and consent pages. Prints "ready <port>".
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const port = Number.parseInt(process.argv[2], 10);
const { OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI, OIDC_ACCOUNTS_FILE } = process.env;

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: OIDC_CLIENT_ID,
      client_secret: OIDC_CLIENT_SECRET,
      redirect_uris: [OIDC_REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    },
  ],
  scopes: ["openid", "email", "profile", "groups"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], groups: ["groups"] },
  async findAccount(ctx, id) {
    const accounts = JSON.parse(readFileSync(OIDC_ACCOUNTS_FILE, "utf8"));
    if (!accounts[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => false },
  cookies: { keys: ["test-only-cookie-key"] },
});

provider.listen(port, "127.0.0.1", () => console.log(`ready ${port}`));
