// The Fleet view of `wanir serve`: POST /api/plan with a traffic file's text; plots the latency
// CDF of the leading deployments against the SLO and cost against p95, and lists the ranking.
"use strict";
(() => {
  const q = (s) => document.querySelector(s);
  const EXAMPLE = `classes:
  - {name: sd-480p, overrides: [model=wan2.1-t2v-1.3b, workload.height=480, workload.width=832], share: 0.9}
  - {name: hd-720p, overrides: [model=wan2.1-t2v-1.3b, workload.height=720, workload.width=1280], share: 0.1}
arrivals: {rate_per_day: 1100}
slo: {percentile: 95, latency_s: 1800}
prices: {l40s: 0.99, rtx-4090: 0.69, h100-sxm: 2.99}
simulation: {replications: 3, requests: 4000}
deployments:
  - {hardware: rtx-4090, devices: 1}
  - {hardware: l40s, devices: 1}
  - {hardware: h100-sxm, devices: 1}
  - {hardware: h100-sxm, devices: 2, plan: cfg2}
`;
  const minutes = (s) => (s === null || s === undefined ? "-" : (s / 60).toFixed(1) + " min");
  const money = (v, d) => (v === null || v === undefined ? "-" : "$" + v.toLocaleString(undefined, {maximumFractionDigits: d}));
  let running = null;

  function cell(tag, text) { const c = document.createElement(tag); c.textContent = text; return c; }

  function table(rows) {
    const head = ["#", "hardware", "GPUs/replica", "plan", "batch", "replicas", "util", "service (range)", "p50", "p95", "p99", "SLO",
                  "$/video", "$/month", "by"];
    const tr = document.createElement("tr");
    head.forEach((h) => tr.appendChild(cell("th", h)));
    q("#fleet-table thead").replaceChildren(tr);
    const body = rows.map((r, i) => {
      const row = document.createElement("tr");
      if (r.meets_slo === false) row.className = "miss";
      [i + 1, r.hardware, r.devices, r.plan, r.batch, r.replicas ?? "-",
       r.utilization === null ? "-" : Math.round(100 * r.utilization) + " %", r.service_text ?? minutes(r.service_s.mean),
       minutes(r.latency_s.p50),
       minutes(r.latency_s.p95), minutes(r.latency_s.p99), r.meets_slo ? "yes" : "no",
       money(r.usd_per_video, 3), money(r.usd_per_month, 0), r.method].forEach((v) => row.appendChild(cell("td", String(v))));
      return row;
    });
    q("#fleet-table tbody").replaceChildren(...body);
  }

  function plots(d) {
    const P = window.Plotly;
    if (!P) throw new Error("Plotly's JavaScript did not load (install the 'web' extra)");
    const slo = d.plan.traffic.slo;
    const lines = d.cdf.map((c) => ({x: c.x.map((x) => x / 60), y: c.y, mode: "lines", name: c.label}));
    const shapes = slo ? [{type: "line", x0: slo.latency_s / 60, x1: slo.latency_s / 60, y0: 0, y1: 1, yref: "paper",
                           line: {color: "crimson", dash: "dash"}}] : [];
    P.react(q("#fl-cdf"), lines, {title: {text: "Latency CDF at the peak hour (queueing + generation)", font: {size: 14}},
      xaxis: {title: {text: "minutes"}}, yaxis: {title: {text: "fraction of requests"}, range: [0, 1.02]}, shapes,
      margin: {t: 40}, legend: {font: {size: 10}}}, {responsive: true, displaylogo: false});
    const ok = d.plan.deployments.filter((r) => r.meets_slo && r.replicas !== null);
    const priced = ok.every((r) => r.usd_per_month !== null);
    const cost = (r) => (priced ? r.usd_per_month : r.gpu_hours_per_month);
    P.react(q("#fl-pareto"), [{x: ok.map((r) => r.latency_s.p95 / 60), y: ok.map(cost), mode: "markers",
      text: ok.map((r) => `${r.replicas}× ${r.hardware}×${r.devices} ${r.plan}`), name: "meets the SLO"}],
      {title: {text: "Monthly cost against p95 latency", font: {size: 14}}, xaxis: {title: {text: "p95 (minutes)"}},
       yaxis: {title: {text: priced ? "USD per month" : "GPU-hours per month"}}, shapes, margin: {t: 40},
       hovermode: "closest"}, {responsive: true, displaylogo: false});
  }

  async function run() {
    const sec = q("#view-fleet");
    if (running) running.abort();
    running = new AbortController();
    sec.dataset.state = "running";
    q("#fl-error").textContent = "";
    q("#fl-summary").textContent = "planning…";
    try {
      const r = await fetch("/api/plan", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({traffic: q("#fl-traffic").value}), signal: running.signal});
      const d = await r.json();
      if (!r.ok) throw new Error(d.error || r.statusText);
      table(d.plan.deployments);
      plots(d);
      const b = d.plan.best;
      q("#fl-summary").textContent = b ? `best: ${b.replicas} × ${b.hardware} × ${b.devices} (${b.plan}) at the peak hour, ` +
        `${money(b.usd_per_month, 0)}/month, p95 ${minutes(b.latency_s.p95)}; ${d.plan.evaluated} deployments evaluated` +
        (d.plan.unfit ? `, ${d.plan.unfit} do not fit in memory (not listed)` : "")
        : `no deployment meets the SLO; ${d.plan.evaluated} evaluated` +
        (d.plan.unfit ? `, ${d.plan.unfit} do not fit in memory (not listed)` : "");
      sec.dataset.state = "ready";
    } catch (e) {
      if (e.name === "AbortError") return;
      q("#fl-error").textContent = e.message;
      q("#fl-summary").textContent = "";
      sec.dataset.state = "error";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const ta = q("#fl-traffic");
    if (!ta) return;
    ta.value = EXAMPLE;
    q("#fl-run").addEventListener("click", run);
  });
})();
