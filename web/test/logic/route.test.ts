import { describe, expect, it } from "vitest";
import { parseRoute, routeHash } from "../../src/logic/route";

describe("routes", () => {
  it("parses hash routes and falls back to the VM list", () => {
    expect(parseRoute("#/sites")).toEqual({ page: "sites" });
    expect(parseRoute("#/history/12")).toEqual({ page: "migration", id: 12 });
    expect(parseRoute("#/history")).toEqual({ page: "history" });
    expect(parseRoute("#/history/x")).toEqual({ page: "history" });
    expect(parseRoute("")).toEqual({ page: "vms" });
    expect(parseRoute("#/nope")).toEqual({ page: "vms" });
    expect(routeHash({ page: "migration", id: 4 })).toBe("#/history/4");
  });
});
