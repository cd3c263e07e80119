import { describe, expect, it } from "vitest";
import { formatBytes, formatBytesRate, formatDuration, formatMbps, formatMoney, formatMs, formatPercent, formatTime } from "../../src/logic/format";

describe("formatBytes", () => {
  it("uses binary units with sensible precision", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1024)).toBe("1.00 KiB");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(10 * 1024 * 1024)).toBe("10.0 MiB");
    expect(formatBytes(512 * 1024 ** 3)).toBe("512 GiB");
    expect(formatBytes(3 * 1024 ** 4)).toBe("3.00 TiB");
  });
  it("says unknown for missing values", () => {
    expect(formatBytes(undefined)).toBe("—");
    expect(formatBytes(null)).toBe("—");
    expect(formatBytes(NaN)).toBe("—");
  });
});

describe("formatDuration", () => {
  it("reads like a person would say it", () => {
    expect(formatDuration(0.85)).toBe("850 ms");
    expect(formatDuration(1.25)).toBe("1.3 s");
    expect(formatDuration(12.3)).toBe("12 s");
    expect(formatDuration(125)).toBe("2 min 05 s");
    expect(formatDuration(3720)).toBe("1 h 02 min");
    expect(formatDuration(-1)).toBe("—");
    expect(formatDuration(undefined)).toBe("—");
  });
  it("formats milliseconds", () => {
    expect(formatMs(0)).toBe("0 ms");
    expect(formatMs(480.4)).toBe("480 ms");
    expect(formatMs(2500)).toBe("2.5 s");
    expect(formatMs(null)).toBe("—");
  });
});

describe("rates", () => {
  it("formats link rates in Mbit/s and Gbit/s", () => {
    expect(formatMbps(40)).toBe("40.0 Mbit/s");
    expect(formatMbps(400)).toBe("400 Mbit/s");
    expect(formatMbps(2500)).toBe("2.5 Gbit/s");
  });
  it("converts bytes per second into the link's unit", () => {
    expect(formatBytesRate(5e6)).toBe("40.0 Mbit/s");
    expect(formatBytesRate(null)).toBe("—");
  });
});

describe("other", () => {
  it("formats fractions, money and times", () => {
    expect(formatPercent(0.825)).toBe("83 %");
    expect(formatPercent(0.825, 1)).toBe("82.5 %");
    expect(formatPercent(undefined)).toBe("—");
    expect(formatMoney(0.0123, "EUR")).toBe("0.0123 EUR");
    expect(formatMoney(12, "USD")).toBe("12.00 USD");
    expect(formatTime(0)).toBe("—");
    expect(formatTime(new Date(2024, 0, 2, 3, 4, 5).getTime())).toBe("2024-01-02 03:04:05");
  });
});
