// A uPlot chart in a container with a stable test id. uPlot draws on a canvas; the
// container says how many points it drew (data-points) so tests can check it drew data.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Columns } from "../logic/charts";

export interface SeriesSpec {
  label: string;
  color: string;
  scale?: string;
  unit: string;
  dash?: number[];
  points?: boolean;
}

/** @p integerX: x counts things (migration numbers), so its ticks are whole numbers. */
export function Chart({ testId, title, data, series, xLabel, integerX = false, height = 240 }: { testId: string; title: string; data: Columns; series: SeriesSpec[]; xLabel: string; integerX?: boolean; height?: number }) {
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const scales = [...new Set(series.map((s) => s.scale ?? "y"))];
    const opts: uPlot.Options = {
      title,
      width: Math.max(320, el.clientWidth || 600),
      height,
      // A lone point still gets an x range around it (uPlot's auto range would be empty).
      scales: { x: { time: false, range: (_u, lo, hi) => (lo === hi ? [lo - 1, hi + 1] : [lo, hi]) } },
      axes: [
        integerX ? { label: xLabel, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] } : { label: xLabel },
        ...scales.map((sc, i) => {
          const unit = series.find((s) => (s.scale ?? "y") === sc)?.unit ?? "";
          return { scale: sc, label: unit, side: i === 0 ? 3 : 1, grid: { show: i === 0 } } as uPlot.Axis;
        }),
      ],
      series: [
        { label: xLabel },
        ...series.map(
          (s): uPlot.Series => ({
            label: s.label,
            stroke: s.color,
            width: 2,
            scale: s.scale ?? "y",
            dash: s.dash,
            points: { show: s.points ?? false },
            value: (_u, v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} ${s.unit}`),
          }),
        ),
      ],
    };
    const plot = new uPlot(opts, data as uPlot.AlignedData, el);
    // Follow the container's width (the page layout is fluid).
    const onResize = () => plot.setSize({ width: Math.max(320, el.clientWidth || 600), height });
    window.addEventListener("resize", onResize);
    return () => {
      window.removeEventListener("resize", onResize);
      plot.destroy();
    };
  }, [data, series, xLabel, integerX, title, height]);

  return <div class="chart" data-testid={testId} data-points={data[0].length} ref={box} />;
}
