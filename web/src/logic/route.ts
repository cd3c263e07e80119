// Hash routes (#/vms, #/history/12): the controller only serves index.html and /assets/*.
export type Route =
  | { page: "sites" }
  | { page: "vms" }
  | { page: "import" }
  | { page: "history" }
  | { page: "migration"; id: number }
  | { page: "mobility" }
  | { page: "audit" };

export const PAGES = ["sites", "vms", "import", "history", "mobility", "audit"] as const;

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const [head, arg] = parts;
  if (head === "history" && arg !== undefined && /^\d+$/.test(arg)) return { page: "migration", id: Number(arg) };
  if (head && (PAGES as readonly string[]).includes(head)) return { page: head as (typeof PAGES)[number] } as Route;
  return { page: "vms" };
}

export function routeHash(r: Route): string {
  return r.page === "migration" ? `#/history/${r.id}` : `#/${r.page}`;
}
