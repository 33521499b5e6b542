// The shell: signing in (an API token, or single sign-on where configured), the navigation,
// and the hash routes.
import { Provider, useQuery, useSubscription } from "@urql/preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { openSession, tokenStore } from "./client";
import { MeQuery, RequestEventsSubscription } from "./ops";
import { Applications, AppDetails, ApprovalForDeployment, BuildAndDeploy, SelectImage } from "./screens";
import { ApprovalPending } from "./requests";
import { ErrorNote } from "./ui";
import { isReturning, ssoConfig, type SsoConfig } from "./sso";

const sso = ssoConfig();

function useHash(): string[] {
  const read = () => window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [parts, setParts] = useState(read);
  useEffect(() => {
    const onChange = () => setParts(read());
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return parts;
}

export function App() {
  const [token, setToken] = useState<string | null>(tokenStore.get());
  const [notice, setNotice] = useState<string | null>(null);
  const [returning, setReturning] = useState(() => Boolean(sso && isReturning()));
  useEffect(() => {
    // Back from the identity provider: the code becomes the ID token this tab signs in with.
    if (!returning || !sso) return;
    import("./sso-flow")
      .then((flow) =>
        flow
          .finishSignIn(sso)
          .then((idToken) => {
            tokenStore.set(idToken);
            setNotice(null);
            setToken(idToken);
          })
          .catch((error) => setNotice(flow.ssoProblem(error))),
      )
      .catch(() => setNotice("The console could not load its sign-in code; reload the page. (NETWORK)"))
      .finally(() => setReturning(false));
  }, []);
  const session = useMemo(
    () =>
      token
        ? openSession(token, (reason) => {
            tokenStore.clear();
            setNotice(`Signed out: ${reason}`);
            setToken(null);
          })
        : null,
    [token],
  );
  useEffect(() => () => session?.close(), [session]);

  const signOut = () => {
    tokenStore.clear();
    setToken(null);
    setNotice("Signed out.");
    window.location.hash = "";
  };

  if (returning) return <main class="signin"><p role="status">Signing in…</p></main>;
  if (!session) {
    return (
      <SignIn
        notice={notice}
        sso={sso}
        onProblem={setNotice}
        onToken={(value) => {
          tokenStore.set(value);
          setNotice(null);
          setToken(value);
        }}
      />
    );
  }
  return (
    <Provider value={session.client}>
      <Shell onSignOut={signOut} onRefused={(message) => { tokenStore.clear(); setNotice(message); setToken(null); }} />
    </Provider>
  );
}

function SignIn(props: {
  notice: string | null;
  sso: SsoConfig | null;
  onToken: (token: string) => void;
  onProblem: (message: string) => void;
}) {
  const [value, setValue] = useState("");
  const [leaving, setLeaving] = useState(false);
  const { sso } = props;
  // The first screen's budget is measured to this mark (make console-budget): the form is
  // on screen and takes input.
  useEffect(() => void performance.mark("greenlight:sign-in-ready"), []);
  return (
    <main class="signin">
      <h1>Greenlight</h1>
      {sso && (
        <div class="panel">
          <button
            type="button"
            class="primary"
            disabled={leaving}
            onClick={() => {
              setLeaving(true);
              import("./sso-flow")
                .then((flow) =>
                  flow.startSignIn(sso).catch((error) => {
                    setLeaving(false);
                    props.onProblem(flow.ssoProblem(error));
                  }),
                )
                .catch(() => {
                  setLeaving(false);
                  props.onProblem("The console could not load its sign-in code; reload the page. (NETWORK)");
                });
            }}
          >
            Sign in with single sign-on
          </button>
          <p class="muted">
            Through your identity provider (<code>{sso.issuer.host}</code>).
          </p>
        </div>
      )}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (value.trim()) props.onToken(value.trim());
        }}
      >
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          value={value}
          onInput={(event) => setValue((event.target as HTMLInputElement).value)}
          required
        />
        <button type="submit" class="primary">
          Sign in
        </button>
        <p class="muted">
          A token from <code>greenlight bootstrap EMAIL</code> or from an administrator. It is kept in this tab
          only and forgotten when you sign out.
        </p>
        {props.notice && <p role="status">{props.notice}</p>}
      </form>
    </main>
  );
}

// Administration is for super-admins only: its code loads when first opened, not with the
// first screen.
type AdminScreen = typeof import("./admin").Admin;
function LazyAdmin(props: { section?: string }) {
  const [Admin, setAdmin] = useState<{ screen: AdminScreen } | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    import("./admin").then((m) => setAdmin({ screen: m.Admin }), () => setFailed(true));
  }, []);
  if (failed) return <p class="error" role="alert">Administration could not be loaded; reload the page. <code>NETWORK</code></p>;
  if (!Admin) return <p>Loading…</p>;
  return <Admin.screen section={props.section} />;
}

function Shell(props: { onSignOut: () => void; onRefused: (message: string) => void }) {
  const [{ data, error, fetching }] = useQuery({ query: MeQuery, requestPolicy: "cache-first" });
  // One subscription for the whole console: every request change the user may see lands
  // in the cache, and the lists that may hold it are read again.
  useSubscription({ query: RequestEventsSubscription, pause: !data });
  const route = useHash();
  useEffect(() => {
    const first = error?.graphQLErrors[0];
    if (first?.extensions?.code === "UNAUTHENTICATED") props.onRefused(`${first.message} (UNAUTHENTICATED)`);
  }, [error]);
  if (!data) return <main>{fetching ? <p>Loading…</p> : <ErrorNote error={error} />}</main>;
  const me = data.me;
  const [top, app, env, screen] = route;
  let page;
  if (top === "pending") page = <ApprovalPending me={me} />;
  else if (top === "admin" && me.isSuperAdmin) page = <LazyAdmin section={app} />;
  else if (top === "app" && app && env === "details") page = <AppDetails application={app} environment={screen} />;
  else if (top === "app" && app && env && screen === "select") page = <SelectImage application={app} environment={env} />;
  else if (top === "app" && app && env && screen === "approval")
    page = <ApprovalForDeployment application={app} environment={env} notifications={data.notificationsEnabled} />;
  else if (top === "app" && app) page = <BuildAndDeploy application={app} />;
  else page = <Applications />;
  return (
    <>
      <header>
        <a class="brand" href="#/">
          Greenlight
        </a>
        <nav aria-label="Main">
          <a href="#/">Applications</a>
          <a href="#/pending">Approval pending</a>
          {me.isSuperAdmin && <a href="#/admin">Administration</a>}
          <a href="/graphql">GraphiQL</a>
        </nav>
        <span class="me">
          <span class="muted">{me.name}</span>
          <button type="button" onClick={props.onSignOut}>
            Sign out
          </button>
        </span>
      </header>
      <main>{page}</main>
    </>
  );
}
