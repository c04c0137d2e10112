// Draws the log metrics page's charts with Chart.js from the figures of
// GET /api/v1/metrics/logs (one row per service and minute).
"use strict";

const PALETTE = ["#2f5bd3", "#d64235", "#2e9d58", "#f0a43a", "#8e5bd3", "#1aa3a3", "#c2527a", "#6b7a2e"];

function timeLabel(ms) {
  return new Date(ms).toISOString().slice(11, 16);
}

function lineChart(canvas, datasets, yTitle, range) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "nearest", intersect: false },
      elements: { point: { radius: 0 }, line: { borderWidth: 1.6, tension: 0.2 } },
      scales: {
        x: { type: "linear", min: range.from, max: range.to, ticks: { callback: timeLabel, maxTicksLimit: 12 } },
        y: { beginAtZero: true, title: { display: true, text: yTitle } },
      },
      plugins: {
        tooltip: { callbacks: { title: (items) => items.length ? new Date(items[0].parsed.x).toISOString().replace("T", " ").slice(0, 16) : "" } },
      },
    },
  });
}

function series(rows, value) {
  const byService = new Map();
  for (const row of rows) {
    const y = value(row);
    if (y === null || y === undefined) continue;
    if (!byService.has(row.service)) byService.set(row.service, []);
    byService.get(row.service).push({ x: Date.parse(row.minute), y });
  }
  return [...byService.entries()].map(([service, data], i) => ({
    label: service, data, borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
  }));
}

document.addEventListener("DOMContentLoaded", async () => {
  const root = document.getElementById("metrics");
  const status = document.getElementById("metrics-status");
  if (!root || typeof Chart === "undefined") return;
  try {
    const response = await fetch(root.dataset.url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const rows = (await response.json()).metrics;
    status.textContent = rows.length ? `${rows.length} service-minutes` : "No metrics in this range: the log pipeline records them as it consumes.";
    const services = new Set(rows.map((r) => r.service));
    const range = { from: Number(root.dataset.from), to: Number(root.dataset.to) };
    lineChart(document.getElementById("chart-volume"), series(rows, (r) => r.total), "lines / min", range);
    lineChart(document.getElementById("chart-errors"),
      series(rows, (r) => r.total ? 100 * (r.error_count + r.fatal_count) / r.total : 0), "% of lines", range);
    const latency = services.size === 1
      ? [["p50", (r) => r.latency_p50], ["p95", (r) => r.latency_p95], ["p99", (r) => r.latency_p99]].map(([name, f], i) => {
          const [one] = series(rows, f);
          return { ...(one || { data: [] }), label: name, borderColor: PALETTE[i], backgroundColor: PALETTE[i] };
        })
      : series(rows, (r) => r.latency_p99);
    lineChart(document.getElementById("chart-latency"), latency, "ms", range);
    root.dataset.drawn = "true";
  } catch (err) {
    status.textContent = `Could not load the metrics: ${err.message}`;
  }
});
