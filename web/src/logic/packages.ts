// Reading an uploaded package's answer (GET /v1/packages/{name}).
import type { PackageDetail } from "../api/types";
import { formatMoney } from "./format";

export type PlacementText = { ok: true; site: string; host: string; cost: string } | { ok: false; why: string };

/** Where placement would put the package's VM, or the controller's reason why nowhere. */
export function placementOf(pkg: PackageDetail): PlacementText {
  const p = pkg.placement as Partial<{ site: string; host: string; cost_per_hour: number; error: { code: string; message: string } }>;
  if (p && p.error) return { ok: false, why: p.error.message || p.error.code };
  if (p && p.site) return { ok: true, site: p.site, host: p.host ?? "?", cost: `${formatMoney(p.cost_per_hour)}/h` };
  return { ok: false, why: "the controller said nothing about placement" };
}

/** A package name the API accepts, from a file name: web.ova -> web.ova, "my vm (2).ova" -> my_vm_2_.ova. */
export function packageName(fileName: string): string {
  let n = fileName.replace(/[^A-Za-z0-9._-]/g, "_").replace(/_+/g, "_");
  if (!/^[A-Za-z0-9_]/.test(n)) n = "_" + n;
  return n.slice(0, 64);
}
