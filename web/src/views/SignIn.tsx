// The sign-in page: POST /v1/session; the token it answers stays in memory (ApiClient).
import { useState } from "preact/hooks";
import type { ApiClient } from "../api/client";
import type { Session } from "../api/types";
import { ErrorBox } from "./common";
import { errorMessage } from "./state";

export function SignIn({ api, onSignedIn, notice }: { api: ApiClient; onSignedIn: (s: Session) => void; notice?: string }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await api.signIn(user, password));
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin">
      <form class="card signin-card" onSubmit={submit} aria-label="Sign in">
        <h1>vandra console</h1>
        {notice ? <p class="muted">{notice}</p> : null}
        <label>
          User
          <input name="user" autocomplete="username" value={user} required onInput={(e) => setUser(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" value={password} required onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        <ErrorBox message={error} what="Sign-in failed" />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
