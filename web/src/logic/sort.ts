// Sorting and filtering of the lists the console shows.
import type { AuditEntry, Migration } from "../api/types";

/** Newest first: by start time, then by id (ids rise with time). */
export function newestFirst<T extends Pick<Migration, "id" | "started_at_ms">>(list: readonly T[]): T[] {
  return [...list].sort((a, b) => (b.started_at_ms ?? 0) - (a.started_at_ms ?? 0) || b.id - a.id);
}

export function byName<T extends { name: string }>(list: readonly T[]): T[] {
  return [...list].sort((a, b) => a.name.localeCompare(b.name));
}

/** Moves vandra made by itself (not an operator's), with their why. */
export const AUTONOMOUS = ["wander", "come_home", "drain", "sla"] as const;
export function autonomous(list: readonly Migration[]): Migration[] {
  return newestFirst(list.filter((m) => (AUTONOMOUS as readonly string[]).includes(m.reason)));
}

/** Client-side free-text filter over every column of an audit entry. */
export function filterAudit(list: readonly AuditEntry[], text: string): AuditEntry[] {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return [...list];
  return list.filter((e) => {
    const hay = [e.who, e.role, e.action, e.target, String(e.status), e.result, e.reason]
      .join(" ")
      .toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}
