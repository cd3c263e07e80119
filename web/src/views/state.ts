// The console's shared state once signed in: the lists (refetched on `changed` events, on a
// stream reconnect and every 10 s as a fallback), the live migrations reduced from the
// stream, and the errors to show. Views read it through the Console context.
import { createContext } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";
import { ApiClient } from "../api/client";
import { openStream } from "../api/stream";
import type { Host, Link, ListName, Migration, Mobility, Session, Site, SlaStatus, Vm } from "../api/types";
import { prune, reconcile, reduce, type ProgressMap } from "../logic/progress";

export interface Lists {
  sites?: Site[];
  hosts?: Host[];
  links?: Link[];
  vms?: Vm[];
  sla?: SlaStatus;
  migrations?: Migration[];
  mobility?: Mobility;
}

export interface ErrorNote {
  id: number;
  what: string;
  message: string;
}

export interface ConsoleState {
  api: ApiClient;
  session: Session;
  /** Operators may change things; viewers see every control disabled. */
  canChange: boolean;
  lists: Lists;
  /** Per list, the message of the last failed load (cleared by the next success). */
  listErrors: Partial<Record<keyof Lists, string>>;
  refresh: (what?: ListName) => void;
  progress: ProgressMap;
  dismiss: (id: number) => void;
  /** Shows a migration this browser just started at once (the stream follows it). */
  track: (m: Migration) => void;
  /** Bumped on every `changed` audit event: the audit page refetches. */
  auditTick: number;
  streamUp: boolean;
  errors: ErrorNote[];
  report: (what: string, err: unknown) => void;
  clearError: (id: number) => void;
}

export const Console = createContext<ConsoleState | null>(null);

export function useConsole(): ConsoleState {
  const c = useContext(Console);
  if (!c) throw new Error("useConsole outside the signed-in console");
  return c;
}

/** Which lists a `changed` event names. */
const AFFECTS: Record<ListName, (keyof Lists)[]> = {
  vms: ["vms", "sla", "hosts"],
  sites: ["sites", "hosts", "links", "sla"],
  migrations: ["migrations"],
  mobility: ["mobility"],
  audit: [],
};
const ALL: (keyof Lists)[] = ["sites", "hosts", "links", "vms", "sla", "migrations", "mobility"];
const POLL_MS = 10000;
const KEEP_ENDED = 6;

let nextErrorId = 1;

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export function useConsoleState(api: ApiClient, session: Session): ConsoleState {
  const [lists, setLists] = useState<Lists>({});
  const [listErrors, setListErrors] = useState<ConsoleState["listErrors"]>({});
  const [progress, setProgress] = useState<ProgressMap>(new Map());
  const [auditTick, setAuditTick] = useState(0);
  // Panels the user closed: a late event for them does not bring them back.
  const dismissed = useRef(new Set<number>());
  const [streamUp, setStreamUp] = useState(false);
  const [errors, setErrors] = useState<ErrorNote[]>([]);

  const report = useCallback((what: string, err: unknown) => {
    const note = { id: nextErrorId++, what, message: errorMessage(err) };
    setErrors((es) => [...es.slice(-4), note]);
  }, []);
  const clearError = useCallback((id: number) => setErrors((es) => es.filter((e) => e.id !== id)), []);

  const load = useCallback(
    async (name: keyof Lists) => {
      try {
        const value = await LOADERS[name](api);
        setLists((l) => ({ ...l, [name]: value }));
        setListErrors((e) => (e[name] ? { ...e, [name]: undefined } : e));
        if (name === "migrations") {
          const fresh = (value as Migration[]).filter((m) => !dismissed.current.has(m.id));
          setProgress((p) => prune(reconcile(p, fresh), KEEP_ENDED));
        }
      } catch (err) {
        setListErrors((e) => ({ ...e, [name]: errorMessage(err) }));
      }
    },
    [api],
  );

  const refresh = useCallback(
    (what?: ListName) => {
      if (what === "audit") setAuditTick((t) => t + 1);
      const names = what ? AFFECTS[what] : ALL;
      for (const n of names) void load(n);
      if (!what) setAuditTick((t) => t + 1);
    },
    [load],
  );

  // The first load, then the fallback poll.
  useEffect(() => {
    refresh();
    const t = setInterval(() => refresh(), POLL_MS);
    return () => clearInterval(t);
  }, [refresh]);

  // The live stream; refs keep the handlers current without reopening it.
  const refreshRef = useRef(refresh);
  refreshRef.current = refresh;
  useEffect(
    () =>
      openStream({
        onMigration: (ev) => {
          if (!dismissed.current.has(ev.id)) setProgress((p) => prune(reduce(p, ev), KEEP_ENDED));
        },
        onChanged: (what) => refreshRef.current(what),
        onConnected: (again) => {
          setStreamUp(true);
          if (again) refreshRef.current();
        },
        onDown: () => setStreamUp(false),
      }),
    [],
  );

  const dismiss = useCallback(
    (id: number) => {
      dismissed.current.add(id);
      setProgress((p) => {
        const next = new Map(p);
        next.delete(id);
        return next;
      });
    },
    [],
  );

  const track = useCallback((m: Migration) => setProgress((p) => reduce(p, m)), []);

  return {
    api,
    session,
    canChange: session.role === "operator",
    lists,
    listErrors,
    refresh,
    progress,
    dismiss,
    track,
    auditTick,
    streamUp,
    errors,
    report,
    clearError,
  };
}

const LOADERS: Record<keyof Lists, (api: ApiClient) => Promise<unknown>> = {
  sites: (a) => a.sites(),
  hosts: (a) => a.hosts(),
  links: (a) => a.links(),
  vms: (a) => a.vms(),
  sla: (a) => a.sla(),
  migrations: (a) => a.migrations(),
  mobility: (a) => a.mobility(),
};
