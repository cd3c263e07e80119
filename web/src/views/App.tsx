// The console's frame: sign-in gate, header (who, role, sign-out), navigation by hash,
// errors, the live migration panels and the current page.
import { useEffect, useState } from "preact/hooks";
import { ApiClient, ApiError } from "../api/client";
import type { Session } from "../api/types";
import { parseRoute, type Route } from "../logic/route";
import { AuditPage } from "./Audit";
import { HistoryPage } from "./History";
import { ImportPage } from "./Import";
import { MigrationPage } from "./MigrationDetail";
import { MobilityPage } from "./Mobility";
import { ProgressPanels } from "./Progress";
import { SignIn } from "./SignIn";
import { SitesPage } from "./Sites";
import { Console, errorMessage, useConsole, useConsoleState } from "./state";
import { VmsPage } from "./Vms";

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

const NAV: [Route["page"], string][] = [
  ["sites", "Sites"],
  ["vms", "VMs"],
  ["import", "Import"],
  ["history", "History"],
  ["mobility", "Mobility"],
  ["audit", "Audit"],
];

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "sites":
      return <SitesPage />;
    case "import":
      return <ImportPage />;
    case "history":
      return <HistoryPage />;
    case "migration":
      return <MigrationPage id={route.id} />;
    case "mobility":
      return <MobilityPage />;
    case "audit":
      return <AuditPage />;
    default:
      return <VmsPage />;
  }
}

function Errors() {
  const { errors, clearError } = useConsole();
  if (errors.length === 0) return null;
  return (
    <div class="errors">
      {errors.map((e) => (
        <div class="error" role="alert" key={e.id}>
          <strong>{e.what}: </strong>
          {e.message}
          <button class="link" aria-label="Dismiss error" onClick={() => clearError(e.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}

function Shell({ onSignOut }: { onSignOut: () => void }) {
  const c = useConsole();
  const route = useRoute();
  const active = route.page === "migration" ? "history" : route.page;
  return (
    <>
      <header class="top">
        <span class="brand">vandra</span>
        <nav aria-label="Main">
          {NAV.map(([page, label]) => (
            <a key={page} href={`#/${page}`} class={active === page ? "active" : ""} aria-current={active === page ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span class={c.streamUp ? "live up" : "live down"} title={c.streamUp ? "live updates connected" : "live updates reconnecting"}>
          {c.streamUp ? "live" : "reconnecting"}
        </span>
        <span class="who" data-testid="who">
          {c.session.user} <span class="label">{c.session.role}</span>
        </span>
        <button onClick={onSignOut}>Sign out</button>
      </header>
      {c.canChange ? null : <p class="readonly">Signed in as a viewer: you can see everything and change nothing.</p>}
      <main>
        <Errors />
        <ProgressPanels />
        <Page route={route} />
      </main>
    </>
  );
}

function SignedIn({ api, session, onSignOut }: { api: ApiClient; session: Session; onSignOut: () => void }) {
  const state = useConsoleState(api, session);
  const signOut = async () => {
    try {
      await api.signOut();
    } catch (err) {
      state.report("Sign out", err);
      return;
    }
    onSignOut();
  };
  return (
    <Console.Provider value={state}>
      <Shell onSignOut={signOut} />
    </Console.Provider>
  );
}

export function App({ api }: { api: ApiClient }) {
  // undefined: still asking whether a session exists; null: signed out.
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);

  useEffect(() => {
    api.onUnauthorized = () => {
      api.setCsrf(null);
      setSession(null);
      setNotice("Your session has ended: sign in again.");
    };
    api.getSession().then(
      (s) => {
        api.setCsrf(s.csrf);
        setSession(s);
      },
      (err) => {
        setSession(null);
        // 401 is the ordinary "not signed in"; anything else is worth saying.
        if (!(err instanceof ApiError && err.status === 401)) setNotice(`Could not ask for the session: ${errorMessage(err)}`);
      },
    );
  }, [api]);

  if (session === undefined) return <p class="muted center">Loading…</p>;
  if (session === null)
    return (
      <SignIn
        api={api}
        notice={notice}
        onSignedIn={(s) => {
          setNotice(undefined);
          setSession(s);
        }}
      />
    );
  return <SignedIn api={api} session={session} onSignOut={() => setSession(null)} key={session.user} />;
}
