// wanir serve: the page. Plain JavaScript, no build step; Plotly comes from the server.
"use strict";

const S = {
  options: null, view: "estimate", seq: 0, ctrl: null, last: null, ov: [],
  base: null, sizing: null, sizingFor: null, sort: {key: "rank", dir: 1},
  zoom: {s: 1, x: 0, y: 0}, diagramFor: null, timer: null, jobs: {}, ok: false,
};
const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}
function esc(s) {
  return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
}

// ---------------------------------------------------------------- number formats (as the CLI's)
function fmtCount(v) {
  if (v === null || v === undefined) return "-";
  for (const [u, s] of [["E", 1e18], ["P", 1e15], ["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3]])
    if (Math.abs(v) >= s) return `${+(v / s).toPrecision(3)} ${u}`;
  return String(v);
}
function fmtBytes(v) {
  if (v === null || v === undefined) return "-";
  for (const [u, s] of [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]])
    if (Math.abs(v) >= s) { const x = v / s; return Math.abs(x) >= 100 ? `${x.toFixed(0)} ${u}` : `${+x.toPrecision(3)} ${u}`; }
  return `${v} B`;
}
// backends/report.py fmt_time: the largest of µs … d that v reaches twice (once for ms and s),
// three significant digits (the server sends its own text where it has it)
const TIME_UNITS = [["µs", 1e-6, 0], ["ms", 1e-3, 1], ["s", 1, 1], ["min", 60, 2], ["h", 3600, 2], ["d", 86400, 2]];
function fmtTime(v) {
  if (v === null || v === undefined) return "-";
  if (v === 0) return "0 s";
  let u = TIME_UNITS[0];
  for (const t of TIME_UNITS) if (Math.abs(v) >= t[2] * t[1]) u = t;
  const x = v / u[1];
  return `${Math.abs(x) >= 1000 ? Math.round(x).toLocaleString("en-US") : +x.toPrecision(3)} ${u[0]}`;
}
function fmtRatio(r) { return r === null || r === undefined ? "-" : `${r.toFixed(3)}×`; }

// ---------------------------------------------------------------- requests
async function post(url, data, signal) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify(data), signal});
  let j;
  try { j = await r.json(); } catch (e) { j = {error: `the server answered ${r.status}`}; }
  if (!r.ok) { const e = new Error(j.error || `error ${r.status}`); e.key = j.key; throw e; }
  return j;
}
function setStatus(t) { $("#status").textContent = t; }
const sleep = ms => new Promise(r => setTimeout(r, ms));
// a job (sizing, report): started by a POST answering 202, then polled until it ends;
// onProgress(status) after each poll; resolves with the final status
async function runJob(url, data, onProgress) {
  let st = await post(url, data);
  S.jobs[st.kind] = st.id;
  try {
    while (st.state === "running") {
      onProgress(st);
      await sleep(500);
      const r = await fetch(`/api/jobs/${st.id}`);
      st = await r.json();
      if (!r.ok) throw new Error(st.error || `error ${r.status}`);
    }
  } finally { if (S.jobs[st.kind] === st.id) delete S.jobs[st.kind]; }
  if (st.state !== "done") throw new Error(`${st.kind === "size" ? "the sizing" : "the report"} ${st.state}` +
                                           (st.error ? `: ${st.error}` : ""));
  return st;
}
function jobText(what, st) {
  const pct = st.progress === null || st.progress === undefined ? "" : ` ${Math.round(100 * st.progress)} %,`;
  return `${what}…${pct} ${st.elapsed_s.toFixed(0)} s (at most ${st.limit_s.toFixed(0)} s)`;
}

// ---------------------------------------------------------------- stale marking
// a view that could not update keeps its last figures greyed out under a line saying so,
// never passed off as current
const VIEWS_OF = {estimate: ["#est-body"], roofline: ["#roofline-plot"], breakdown: ["#breakdown-plot", "#memory-plot"],
                  diagram: ["#diagram-box"], compare: ["#compare-table"], sizing: []};
function markStale(view, why) {
  for (const sel of VIEWS_OF[view] || []) { const e = $(sel); if (e) e.classList.add("stale"); }
  const note = $(`#view-${view} .stale-note`);
  if (note) note.textContent = `not updated: ${why} — what is shown is for an earlier configuration`;
}
function clearStale(view) {
  for (const sel of VIEWS_OF[view] || []) { const e = $(sel); if (e) e.classList.remove("stale"); }
  const note = $(`#view-${view} .stale-note`);
  if (note) note.textContent = "";
}
function markAllStale(why) {
  for (const v of Object.keys(VIEWS_OF)) markStale(v, why);
  for (const id of ["dl-json", "dl-csv", "dl-html"]) {
    const a = $("#" + id);
    a.classList.add("disabled"); a.setAttribute("aria-disabled", "true"); a.removeAttribute("href");
    a.title = "the configuration has an error: fix it first";
  }
  const hint = document.getElementById("hint-hardware");
  if (hint) hint.classList.add("stale");
}
function setState(s) { document.body.dataset.state = s; }

// ---------------------------------------------------------------- controls
function field(key, label, input, hint) {
  input.dataset.key = key;
  input.id = "c-" + key.replace(/[^A-Za-z0-9_-]/g, "_");
  return el("div", {class: "field", "data-field": key},
            el("label", {for: input.id, text: label}), input,
            hint ? el("div", {class: "hint", id: "hint-" + key}) : null,
            el("div", {class: "err", role: "alert"}));
}
function selectOf(options, def) {
  const s = el("select", {});
  s.append(el("option", {value: "", text: def ? `default (${def})` : "default"}));
  for (const o of options) s.append(el("option", {value: o, text: o}));
  return s;
}
function textInput(ph) { return el("input", {type: "text", inputmode: "numeric", placeholder: ph || ""}); }

function buildControls(opts) {
  const main = $("#main-controls"), other = $("#other-controls");
  const byName = Object.fromEntries(opts.groups.map(g => [g.name, g]));
  for (const name of opts.main_groups) {
    const g = byName[name];
    if (!g) continue;
    main.append(el("div", {class: "group-title", text: name}));
    main.append(field(name, name === "workload" ? "preset" : name, selectOf(g.options, g.default),
                      name === "hardware"));
    if (name === "workload") {
      const keys = opts.workload_keys;
      for (let i = 0; i < keys.length; i += 2) {
        const row = el("div", {class: "row"});
        for (const k of keys.slice(i, i + 2)) {
          const inp = k === "guidance" ? selectOf(["true", "false"], null) : textInput();
          row.append(field(`workload.${k}`, k, inp));
        }
        main.append(row);
      }
    }
    if (name === "parallel") main.append(field("parallel.degree", "devices (parallel.degree)", textInput("1")));
  }
  const rest = opts.groups.filter(g => !opts.main_groups.includes(g.name) && !g.component);
  if (rest.length) main.append(el("div", {class: "group-title", text: "optimizations and options"}));
  for (const g of rest) main.append(field(g.name, g.name, selectOf(g.options, g.default)));
  for (const g of opts.groups.filter(g => g.component))
    other.append(field(g.name, g.name, selectOf(g.options, g.default)));
  for (const c of $$("[data-key]", $("#form"))) {
    const isText = c.tagName === "TEXTAREA" || c.type === "text";
    c.addEventListener(isText ? "input" : "change", () => { resetDependents(c.dataset.key); schedule(isText ? 250 : 0); });
  }
  syncPlanControls();
}

// what a control's value decides for others: a plan decides its device count and group
// sizes (each plan file has its own), a model its components, a GPU its hardware.* values.
// Changing it resets them, so that no value chosen for the old one is carried over.
const DEPENDENTS = {
  parallel: {fields: ["parallel.degree"], prefixes: ["parallel."]},
  model: {fields: ["text_encoder", "image_encoder", "dit", "vae"], prefixes: ["text_encoder.", "image_encoder.", "dit.", "vae.", "model."]},
  hardware: {fields: [], prefixes: ["hardware."]},
};
function resetDependents(key) {
  if (key === "hardware") hardwareHint(S.last && S.last.document.hardware);
  const dep = DEPENDENTS[key];
  if (!dep) return;
  for (const f of dep.fields) { const c = controlOf(f); if (c) c.value = ""; }
  const keep = $("#advanced").value.split("\n").filter(l => !dep.prefixes.some(p => l.trim().startsWith(p)));
  $("#advanced").value = keep.join("\n");
  syncPlanControls(true);
}
// the caption under the GPU menu: the chosen GPU's (the answer's when the menu is on its default)
function hardwareHint(answered) {
  const hint = document.getElementById("hint-hardware"), c = controlOf("hardware");
  if (!hint) return;
  const hw = S.options.hardware[(c && c.value) || answered || ""];
  const num = x => (x === null || x === undefined) ? "?" : String(+Number(x).toPrecision(4));
  hint.textContent = hw ? `${hw.description || ""} — ${num(hw.memory_gib)} GiB, ` +
    `${num(hw.bf16_tflops)} BF16 TFLOP/s, ${num(hw.bandwidth_tbps)} TB/s` : "";
}

// the device count belongs to a plan: off (and, when the plan changes, emptied) on one
// device; a count a link brings with a single plan stays editable, so that its error shows
function syncPlanControls(clear = false) {
  const plan = controlOf("parallel"), deg = controlOf("parallel.degree");
  if (!plan || !deg) return;
  const single = plan.value === "" || plan.value === "single";
  if (single && clear) deg.value = "";
  deg.disabled = single && deg.value === "";
  deg.title = deg.disabled ? "choose a parallel plan first" : "";
}

function controlOf(key) { return $(`#form [data-key="${CSS.escape(key)}"]`); }

function advancedLines() {
  return $("#advanced").value.split("\n").map(s => s.trim()).filter(s => s && !s.startsWith("#"));
}

function overrides() {
  const out = [];
  for (const c of $$("#form [data-key]")) {
    if (c.dataset.key === "advanced") continue;
    const v = c.value.trim();
    if (v !== "") out.push(`${c.dataset.key}=${v}`);
  }
  return out.concat(advancedLines());
}

function applyOverrides(list) {
  const adv = [];
  for (const o of list) {
    const i = o.indexOf("=");
    if (i < 1) { adv.push(o); continue; }
    const k = o.slice(0, i), v = o.slice(i + 1);
    const c = controlOf(k);
    if (c && c.dataset.key !== "advanced" && c.value === "") {
      if (c.tagName === "SELECT" && !Array.from(c.options).some(x => x.value === v))
        c.append(el("option", {value: v, text: v}));
      c.value = v;
    } else adv.push(o);
  }
  $("#advanced").value = adv.join("\n");
}

// ---------------------------------------------------------------- the URL (permalink)
function queryOf(list) {
  const p = new URLSearchParams();
  for (const o of list) {
    const i = o.indexOf("=");
    if (i < 0) p.append(o, ""); else p.append(o.slice(0, i), o.slice(i + 1));
  }
  return p.toString();
}
function listOf(query) { return Array.from(new URLSearchParams(query).entries()).map(([k, v]) => `${k}=${v}`); }

function hashState() {
  const h = new URLSearchParams();
  if (S.view !== "estimate") h.set("view", S.view);
  if (S.base) h.set("a", queryOf(S.base));
  for (const [id, def] of [["roof-by", "op"], ["roof-depth", "2"], ["bd-depth", "2"], ["bd-kind", "sunburst"],
                           ["dg-stage", ""], ["dg-depth", "2"]]) {
    const v = $("#" + id).value;
    if (v !== def) h.set(id, v);
  }
  return h.toString();
}
function applyHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.has("a")) { S.base = listOf(h.get("a")); $("#cmp-base").value = S.base.join("\n"); }
  for (const id of ["roof-by", "roof-depth", "bd-depth", "bd-kind", "dg-depth"])
    if (h.has(id)) $("#" + id).value = h.get(id);
  if (h.has("dg-stage")) S.wantStage = h.get("dg-stage");
  if (h.has("view")) setView(h.get("view"), false);
}
function updateURL() {
  const q = queryOf(overrides());
  const h = hashState();
  history.replaceState(null, "", location.pathname + (q ? "?" + q : "") + (h ? "#" + h : ""));
  $("#permalink").value = location.href;
  for (const [id, path] of [["dl-json", "estimate.json"], ["dl-csv", "estimate.csv"], ["dl-html", "report.html"]])
    $("#" + id).href = `/download/${path}` + (q ? "?" + q : "");
}

// ---------------------------------------------------------------- errors
function clearErrors() {
  for (const f of $$(".field.bad")) f.classList.remove("bad");
  for (const e of $$("#form .err")) e.textContent = "";
  $("#error").textContent = "";
}
function showError(e) {
  clearErrors();
  let f = e.key ? $(`#form .field[data-field="${CSS.escape(e.key)}"]`) : null;
  const c = e.key ? controlOf(e.key) : null;
  if ((!f || (c && c.value === "")) && e.key && advancedLines().some(l => l.startsWith(e.key + "=") || l.startsWith(e.key)))
    f = $(".field[data-field=advanced]");
  if (f) { f.classList.add("bad"); $(".err", f).textContent = e.message; }
  else $("#error").textContent = e.message;
}

// ---------------------------------------------------------------- recompute
function schedule(delay) {
  setState("pending");
  clearTimeout(S.timer);
  S.timer = setTimeout(recompute, delay);
}

async function recompute() {
  const ov = overrides();
  updateURL();
  const seq = ++S.seq;
  if (S.ctrl) S.ctrl.abort();
  S.ctrl = new AbortController();
  setState("busy");
  setStatus("computing…");
  $("#est-body").classList.add("stale");
  const t0 = performance.now();
  try {
    const d = await post("/api/estimate", {overrides: ov}, S.ctrl.signal);
    if (seq !== S.seq) return;
    S.last = d; S.ov = ov; S.ok = true;
    clearErrors();
    renderEstimate(d);
    // the configuration answers again: the marks an earlier error left on every view no
    // longer hold (their note names that error); the open view reloads below, the others
    // when opened (setView → refreshView), and mark themselves if their own update fails
    for (const v of Object.keys(VIEWS_OF)) clearStale(v);
    setStatus(`answered in ${Math.round(performance.now() - t0)} ms (estimate ${d.compute_ms} ms)`);
    setState("ready");
    refreshView();
  } catch (e) {
    if (e.name === "AbortError" || seq !== S.seq) return;
    S.ok = false;
    showError(e);
    markAllStale(e.message);
    setStatus("error");
    setState("error");
  }
}

function table(tbl, head, rows, totalLast) {
  const th = $("thead", tbl), tb = $("tbody", tbl);
  th.replaceChildren(el("tr", {}, ...head.map(h => el("th", {text: h}))));
  tb.replaceChildren(...rows.map((r, i) => el("tr", {class: totalLast && i === rows.length - 1 ? "total" : null},
                                                 ...r.map(c => el("td", {text: c})))));
}

function renderEstimate(d) {
  $("#title").textContent = d.title;
  $("#est-title").textContent = d.title;
  document.title = `wanir: ${d.title}`;
  const t = $("#stage-table"), md0 = d.multi_device;
  // what `wanir estimate` prints: under a plan the per-device table, the one-device
  // pipeline kept below, folded and labelled
  if (md0) {
    $("#est-title").textContent = md0.title;
    table(t, md0.table.head, md0.table.rows, true);
    table($("#one-device-table"), d.table.head, d.table.rows, true);
  } else table(t, d.table.head, d.table.rows, true);
  $("#one-device").hidden = !md0;
  t.classList.remove("stale");
  $("#est-caption").textContent = d.caption;
  for (const id of ["dl-json", "dl-csv", "dl-html"]) { const a = $("#" + id); a.classList.remove("disabled"); a.removeAttribute("aria-disabled"); a.title = ""; }
  const rep = $("#dl-html");
  if (d.plan) {
    rep.classList.add("disabled"); rep.setAttribute("aria-disabled", "true");
    rep.title = "wanir report works on one device's pipeline and refuses a multi-device plan: use JSON or CSV";
  }
  for (const e of $$(".plan-note")) e.textContent = d.plan ? `per device: ${d.plan.caption}; ${d.plan.time_text} per video` : "";
  const hintEl = document.getElementById("hint-hardware");
  if (hintEl) hintEl.classList.remove("stale");
  const degree = controlOf("parallel.degree");
  if (degree && d.config && d.config.parallel) degree.placeholder = String(d.config.parallel.degree ?? "1");
  const fit = $("#fit");
  fit.textContent = d.fit ? d.fit.text : "";
  fit.className = d.fit ? (d.fit.fits ? "good" : "bad") : "";
  $("#warnings").replaceChildren(...d.warnings.map(w => el("li", {text: "warning: " + w})));
  const md = $("#multi-device");
  md.replaceChildren();
  if (d.multi_device) md.append(...d.multi_device.summary.map(s => el("p", {text: s})));
  const pb = $("#provenance-box"), lines = d.provenance_lines || [];
  pb.hidden = !d.provenance && !lines.length;
  $("#provenance-lines").replaceChildren(...lines.map(l => el("li", {text: l})));
  $("#provenance").replaceChildren(...(d.provenance ? [el("pre", {text: JSON.stringify(d.provenance, null, 2)})] : []));
  $("#config-yaml").textContent = JSON.stringify(d.config, null, 2);
  for (const k of S.options.workload_keys) {
    const c = controlOf(`workload.${k}`);
    if (c && c.tagName === "INPUT") c.placeholder = d.workload[k] === undefined ? "" : String(d.workload[k]);
  }
  hardwareHint(d.document.hardware);
  const sel = $("#dg-stage"), keep = S.wantStage ?? sel.value;
  S.wantStage = undefined;
  sel.replaceChildren(el("option", {value: "", text: "whole pipeline"}), ...d.stages.map(s => el("option", {value: s, text: s})));
  if (d.stages.includes(keep)) sel.value = keep;
}

// ---------------------------------------------------------------- views
function setView(v, refresh = true) {
  if (!$("#view-" + v)) v = "estimate";
  S.view = v;
  for (const b of $$("#tabs button")) b.classList.toggle("active", b.dataset.view === v);
  for (const s of $$(".view")) s.classList.toggle("active", s.id === "view-" + v);
  updateURL();
  if (refresh) refreshView();
}

function refreshView() {
  if (!S.last) return;
  const v = S.view;
  if (v === "roofline") loadRoofline();
  else if (v === "breakdown") loadBreakdown();
  else if (v === "diagram") loadDiagram();
  else if (v === "compare") loadCompare();
  else if (v === "sizing") { if (!S.sizing && !S.jobs.size) runSizing(); else markSizing(); }
}
function plotly() {
  if (window.Plotly) return window.Plotly;
  throw new Error("Plotly's JavaScript did not load (install the 'web' extra: pip install 'wanir[web]')");
}
function viewError(id, e) { markStale(id, e.message); setState("error"); }

async function loadRoofline() {
  if (!S.ok) return;
  setState("busy");
  const seq = S.seq;
  try {
    const d = await post("/api/roofline", {overrides: S.ov, by: $("#roof-by").value, depth: +$("#roof-depth").value});
    if (seq !== S.seq) return;
    plotRoofline(d);
    clearStale("roofline");
    setState("ready");
  } catch (e) { viewError("roofline", e); }
}

function plotRoofline(d) {
  const P = plotly();
  const colorBy = $("#roof-color").value;
  const groups = {};
  for (const p of d.points) (groups[p[colorBy] || "-"] ||= []).push(p);
  const total = d.points.reduce((a, p) => a + p.time_s * p.executions, 0) || 1;
  const traces = Object.entries(groups).map(([name, pts]) => ({
    type: "scatter", mode: "markers", name: esc(name), x: pts.map(p => p.x), y: pts.map(p => p.y),
    marker: {size: pts.map(p => 5 + 25 * Math.sqrt(p.time_s * p.executions / total)), opacity: 0.75,
             line: {width: 0.5, color: "#333"}},
    text: pts.map(p => `<b>${esc(p.name)}</b><br>scope ${esc(p.scope)}<br>${esc(p.kind)} → ${esc(p.shape)}` +
      `<br>FLOPs ${fmtCount(p.flops)}, bytes ${fmtBytes(p.bytes)}<br>time ${fmtTime(p.time_s)}` +
      (p.executions > 1 ? ` × ${p.executions}` : "") + `<br>${esc(p.bound || "")}-bound` +
      `<br>${fmtCount(p.x)}FLOP/B, ${fmtCount(p.y)}FLOP/s`),
    hovertemplate: "%{text}<extra></extra>",
  }));
  const xs = d.points.map(p => p.x).filter(x => x > 0);
  if (d.roof) {
    const r = d.roof, ridge = r.peak_flops / r.bandwidth;
    const lo = Math.min(...xs, 1) / 4, hi = Math.max(...xs, ridge * 4) * 4;
    const grid = Array.from({length: 121}, (_, k) => lo * (hi / lo) ** (k / 120));
    traces.push({type: "scatter", mode: "lines", name: `${r.name} roof: ${(r.peak_flops / 1e12).toFixed(0)} TFLOP/s ${r.dtype}, ${(r.bandwidth / 1e12).toFixed(2)} TB/s`,
                 x: grid, y: grid.map(g => Math.min(r.peak_flops, g * r.bandwidth)), line: {color: "#222", width: 2},
                 hoverinfo: "skip"});
    if (r.vector_flops) traces.push({type: "scatter", mode: "lines", name: "vector roof", x: grid,
                                     y: grid.map(g => Math.min(r.vector_flops, g * r.bandwidth)),
                                     line: {color: "#222", width: 1, dash: "dash"}, hoverinfo: "skip"});
    if (r.l2_bandwidth) traces.push({type: "scatter", mode: "lines", name: `L2 roof: ${(r.l2_bandwidth / 1e12).toFixed(1)} TB/s (working set in L2)`,
                                     x: grid, y: grid.map(g => Math.min(r.peak_flops, g * r.l2_bandwidth)),
                                     line: {color: "#888", width: 1, dash: "dot"}, hoverinfo: "skip"});
  }
  $("#roof-note").textContent = `${d.points.length} ${d.by === "op" ? "ops" : "scopes"}` +
    (d.left_out ? `, ${d.left_out} without FLOPs, bytes or time not shown` : "") + "; marker area ∝ share of time";
  P.react("roofline-plot", traces, {
    title: {text: d.plan ? `roofline of ${esc(d.plan.caption)}` : `roofline on ${esc(d.hardware)}`, font: {size: 14}},
    hovermode: "closest",
    xaxis: {type: "log", title: {text: "arithmetic intensity [FLOP/byte]"}},
    yaxis: {type: "log", title: {text: "attained [FLOP/s]"}},
    legend: {font: {size: 10}}, margin: {t: 40},
  }, {responsive: true, displaylogo: false});
}

async function loadBreakdown() {
  if (!S.ok) return;
  const depth = +$("#bd-depth").value;
  setState("busy");
  const seq = S.seq;
  try {
    const b = depth === S.last.breakdown.depth ? S.last.breakdown :
      (await post("/api/breakdown", {overrides: S.ov, depth})).breakdown;
    if (seq !== S.seq) return;
    plotBreakdown(b);
    plotMemory(S.last.memory);
    clearStale("breakdown");
    setState("ready");
  } catch (e) { viewError("breakdown", e); }
}

function plotBreakdown(b) {
  const P = plotly();
  const time = b.metric === "time_s";
  $("#bd-note").textContent = (time ? "seconds per generation: stage → scope → op kind" :
    "no time estimated: FLOPs per generation") + (b.plan ? ` — ${b.plan.caption} (communication: its exposed time)` : "");
  P.react("breakdown-plot", [{
    type: $("#bd-kind").value, ids: b.ids, labels: b.labels.map(esc), parents: b.parents, values: b.values,
    branchvalues: "total", maxdepth: 4,
    text: b.values.map(v => time ? fmtTime(v) : fmtCount(v) + "FLOP"), customdata: b.ids.map(esc),
    hovertemplate: "<b>%{customdata}</b><br>%{text}<br>%{percentRoot:.1%} of the total<extra></extra>",
  }], {margin: {t: 10, l: 10, r: 10, b: 10}}, {responsive: true, displaylogo: false});
}

function plotMemory(m) {
  const P = plotly();
  if (!m) { $("#memory-plot").textContent = "no memory estimate"; return; }
  const gib = 2 ** 30, x = m.stages.map(s => esc(s.stage) + (s.on_gpu ? "" : " (host)"));
  const traces = [
    {type: "bar", name: "resident weights", x, y: m.stages.map(s => s.weight_bytes / gib), marker: {color: "#80b1d3"},
     hovertemplate: "%{x}: weights %{y:.2f} GiB<extra></extra>"},
    {type: "bar", name: "live activations at the stage's peak", x, y: m.stages.map(s => s.activation_bytes / gib),
     marker: {color: "#fdb462"}, hovertemplate: "%{x}: activations %{y:.2f} GiB<extra></extra>"},
  ];
  // what PyTorch's caching allocator holds beyond the tensors (known at the pipeline's peak)
  if (m.stages.some(s => s.allocator_bytes))
    traces.push({type: "bar", name: "held by PyTorch's caching allocator beyond tensors (at the peak)", x,
                 y: m.stages.map(s => (s.allocator_bytes || 0) / gib), marker: {color: "#bc80bd", pattern: {shape: "/"}},
                 hovertemplate: "%{x}: allocator cache %{y:.2f} GiB<extra></extra>"});
  if (m.stages.some(s => s.reserve_bytes))
    traces.push({type: "bar", name: "CUDA context", x, y: m.stages.map(s => (s.reserve_bytes || 0) / gib),
                 marker: {color: "#cccccc"}, hovertemplate: "%{x}: CUDA context %{y:.2f} GiB<extra></extra>"});
  const shapes = [], ann = [];
  if (m.capacity_bytes) {
    shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, y0: m.capacity_bytes / gib, y1: m.capacity_bytes / gib,
                 line: {color: "#b00020", dash: "dash"}});
    ann.push({xref: "paper", x: 1, y: m.capacity_bytes / gib, xanchor: "right", yanchor: "bottom", showarrow: false,
              text: `${m.hardware} capacity ${fmtBytes(m.capacity_bytes)}`, font: {color: "#b00020"}});
  }
  const pk = m.stages.findIndex(s => s.stage === m.peak_stage);
  if (pk >= 0 && m.peak_allocated_bytes !== null && m.peak_allocated_bytes !== undefined &&
      m.peak_reserved_bytes !== m.peak_allocated_bytes) {   // the tensors' peak, marked on the peak stage's bar
    const y = m.peak_allocated_bytes / gib;
    shapes.push({type: "line", xref: "x", x0: pk - 0.45, x1: pk + 0.45, y0: y, y1: y, line: {color: "#333", width: 2}});
    ann.push({x: x[pk], y, xanchor: "left", xshift: 40, showarrow: false, font: {size: 10},
              text: `tensors ${fmtBytes(m.peak_allocated_bytes)}; allocator ${fmtBytes(m.peak_reserved_bytes)}` +
                    ` + context ${fmtBytes(m.context_bytes)}`});
  }
  if (pk >= 0) ann.push({x: x[pk], y: m.peak_memory_bytes / gib, text: `peak ${fmtBytes(m.peak_memory_bytes)}`,
                         showarrow: true, arrowhead: 2, ay: -30});
  P.react("memory-plot", traces, {barmode: "stack", shapes, annotations: ann, margin: {t: 30},
                                  yaxis: {title: {text: "GPU memory [GiB]"}},
                                  title: {text: (m.plan ? `${esc(m.plan.caption)}: ` : "") +
                                                (m.offload_model ? `offload (${esc(m.offload)}): only the running stage's weights resident` :
                                                                   "every GPU stage's weights resident"), font: {size: 12}}},
            {responsive: true, displaylogo: false});
}

async function loadDiagram() {
  if (!S.ok) return;
  const req = {overrides: S.ov, stage: $("#dg-stage").value, depth: +$("#dg-depth").value, color: $("#dg-color").value};
  const key = JSON.stringify(req);
  if (key === S.diagramFor) { clearStale("diagram"); return; }
  setState("busy");
  const seq = S.seq;
  try {
    const d = await post("/api/diagram", req);
    if (seq !== S.seq) return;
    $("#diagram").innerHTML = d.svg;
    clearStale("diagram");
    S.diagramFor = key;
    zoomFit();
    setState("ready");
  } catch (e) { viewError("diagram", e); }
}
function applyZoom() { const z = S.zoom; $("#diagram").style.transform = `translate(${z.x}px,${z.y}px) scale(${z.s})`; }
function zoomBy(f, cx, cy) {
  const z = S.zoom, box = $("#diagram-box").getBoundingClientRect();
  cx = cx ?? box.width / 2; cy = cy ?? box.height / 2;
  const s = Math.min(20, Math.max(0.05, z.s * f));
  z.x = cx - (cx - z.x) * s / z.s; z.y = cy - (cy - z.y) * s / z.s; z.s = s;
  applyZoom();
}
function zoomFit() {
  const svg = $("#diagram svg");
  if (!svg) return;
  const box = $("#diagram-box").getBoundingClientRect(), r = svg.getBoundingClientRect();
  const w = r.width / S.zoom.s || 1, h = r.height / S.zoom.s || 1;
  S.zoom = {s: Math.min(box.width / w, box.height / h, 1) || 1, x: 0, y: 0};
  applyZoom();
}
function setupZoom() {
  const box = $("#diagram-box");
  box.addEventListener("wheel", e => {
    e.preventDefault();
    const r = box.getBoundingClientRect();
    zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
  }, {passive: false});
  let drag = null;
  box.addEventListener("mousedown", e => { drag = {x: e.clientX - S.zoom.x, y: e.clientY - S.zoom.y}; box.style.cursor = "grabbing"; });
  window.addEventListener("mousemove", e => { if (drag) { S.zoom.x = e.clientX - drag.x; S.zoom.y = e.clientY - drag.y; applyZoom(); } });
  window.addEventListener("mouseup", () => { drag = null; box.style.cursor = "grab"; });
  $("#dg-in").onclick = () => zoomBy(1.3);
  $("#dg-out").onclick = () => zoomBy(1 / 1.3);
  $("#dg-fit").onclick = zoomFit;
}

async function loadCompare() {
  const f = $(".field[data-field=compare]");
  f.classList.remove("bad"); $(".err", f).textContent = "";
  if (!S.ok) return;
  if (!S.base) { S.base = S.ov.slice(); $("#cmp-base").value = S.base.join("\n"); updateURL(); }
  setState("busy");
  const seq = S.seq;
  try {
    const d = await post("/api/compare", {a: S.base, overrides: S.ov});
    if (seq !== S.seq) return;
    const head = ["stage"];
    for (const k of d.keys) head.push(`${k.label} A`, `${k.label} B`, "B / A");
    // times as the server formats them (the CLI's durations, the total with its range)
    const fmt = {time_s: (v, x) => x.time_text ?? fmtTime(v), flops: fmtCount, bytes: fmtBytes, peak_memory_bytes: fmtBytes};
    const rows = d.rows.map(r => [r.stage].concat(...d.keys.map(k => [
      r.a ? fmt[k.key](r.a[k.key], r.a) : "-", r.b ? fmt[k.key](r.b[k.key], r.b) : "-", fmtRatio(r.ratio[k.key])])));
    table($("#compare-table"), head, rows, true);
    $("#compare-table thead").prepend(el("tr", {}, el("th", {text: ""}),
      el("th", {colspan: String(3 * d.keys.length), text: `A: ${d.a.title}    B: ${d.b.title}`})));
    clearStale("compare");
    setState("ready");
  } catch (e) {
    f.classList.add("bad"); $(".err", f).textContent = e.message; markStale("compare", e.message); setState("error");
  }
}

// ---------------------------------------------------------------- sizing
function markSizing() {
  $("#sz-summary").textContent = S.sizing ? S.sizing.summary +
    (S.sizingFor !== JSON.stringify(S.ov) ? " — the configuration changed: press size to update" : "") : "";
}
async function runSizing() {
  const err = $("#sz-error");
  err.textContent = "";
  const split = s => s.split(/[\s,]+/).map(x => x.trim()).filter(Boolean);
  const req = {overrides: S.ov, latency: $("#sz-latency").value.trim() || null,
               throughput: $("#sz-throughput").value.trim() || null,
               devices: $("#sz-devices").value.trim() || null,
               hardware: split($("#sz-hardware").value), prices: split($("#sz-prices").value)};
  if (!req.hardware.length) req.hardware = null;
  setState("busy");
  $("#sz-summary").textContent = "sizing… (every hardware × device count × plan)";
  $("#sz-cancel").hidden = false;
  try {
    const st = await runJob("/api/size", req, st => { $("#sz-summary").textContent = jobText("sizing", st); });
    const d = st.result;
    const tgt = [d.target.latency_s ? `≤ ${fmtTime(d.target.latency_s)} per video` : "",
                 d.target.videos_per_hour ? `≥ ${d.target.videos_per_hour} videos/h` : ""].filter(Boolean).join(" and ");
    d.summary = `${d.evaluated} configurations evaluated, ${d.dropped} do not fit in memory, ${d.fit} fit, ` +
      `${d.meets} meet the target${tgt ? " (" + tgt + ")" : ""}; ${d.shown} shown, in the order of wanir size` +
      (d.priced ? "" : `; no price for ${d.unpriced.join(", ")}: ranked after the priced hardware, by GPU-hours per ` +
                       "video (give prices)") +
      (d.batched ? "; videos/batch: videos generated together per replica" : "") +
      "; latency: from the start of a batch to its last video, with its error range; stack: runtime, attention " +
      "kernel, DiT weights/compute dtype";
    S.sizing = d; S.sizingFor = JSON.stringify(S.ov);
    markSizing();
    renderSizing();
    $("#sizing-table").classList.remove("stale");
    setState("ready");
  } catch (e) {
    err.textContent = e.message; markSizing(); $("#sizing-table").classList.toggle("stale", !!S.sizing);
    if (!S.sizing) $("#sz-summary").textContent = "";
    setState("error");
  } finally { $("#sz-cancel").hidden = true; }
}

// the columns of `wanir size`'s table, then any other field the sizing rows carry (shown as
// text), then whether it meets the target and the Pareto star
const gib = v => (v / 2 ** 30).toFixed(0);
const SZ_COLS = [
  ["rank", "#", r => r.rank], ["hardware", "hardware", r => r.hardware], ["devices", "GPUs", r => r.devices],
  ["plan", "plan", r => r.plan], ["batch", "videos/batch", r => r.batch, d => d.batched],
  ["runtime", "runtime", r => r.runtime ?? "-"], ["attention_kernel", "attention kernel", r => r.attention_kernel ?? "-"],
  ["precision_text", "DiT weights/compute", r => r.precision_text],
  ["time_s", "latency", r => r.latency_text ?? fmtTime(r.time_s)],
  ["videos_per_hour", "videos/h", r => r.videos_per_hour.toFixed(1)],
  ["cost_per_video_usd", "$/video", r => r.cost_per_video_usd === null ? "no price" : r.cost_per_video_usd.toFixed(3)],
  ["gpu_hours_per_video", "GPU-h/video", r => r.gpu_hours_per_video.toFixed(3)],
  ["peak_memory_bytes", "mem/GPU", r => `${fmtBytes(r.peak_memory_bytes)} / ${gib(r.capacity_bytes)} GiB`],
  ["comm_share", "comm", r => `${(100 * r.comm_share).toFixed(0)} %`],
  ["bottleneck", "bottleneck", r => `${r.bottleneck} ${(100 * r.bottleneck_share).toFixed(0)} %`]];
const SZ_TAIL = [["meets_target", "meets", r => r.meets_target ? "yes" : "no"], ["pareto", "Pareto", r => r.pareto ? "★" : ""]];
const SZ_HIDDEN = new Set(["fits", "priced", "capacity_bytes", "bottleneck_share", "speedup", "cost", "cost_unit",
                           "optimizations", "precision", "time_range_s", "latency_text"]);
function sizingColumns(d) {
  const cols = SZ_COLS.filter(c => !c[3] || c[3](d));
  const known = new Set([...SZ_COLS, ...SZ_TAIL].map(c => c[0]));
  const extra = [];
  for (const r of d.rows.slice(0, 1)) for (const k of Object.keys(r))
    if (!known.has(k) && !SZ_HIDDEN.has(k)) extra.push([k, k.replace(/_/g, " "), x => {
      const v = x[k];
      return v === null || v === undefined ? "-" : typeof v === "object" ? JSON.stringify(v) : String(v);
    }]);
  if (d.rows.some(r => r.optimizations)) extra.unshift(["optimizations", "optimizations", r => r.optimizations || "none"]);
  return cols.concat(extra, SZ_TAIL);
}

function renderSizing() {
  const d = S.sizing;
  const costName = d.priced ? "$/video" : d.priced_any ? "$/video (priced) or GPU-h/video" : "GPU-h/video";
  const rows = d.rows.slice();
  const {key, dir} = S.sort;
  rows.sort((a, b) => {
    const x = a[key], y = b[key];
    return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir || a.rank - b.rank;
  });
  const tbl = $("#sizing-table"), cols = sizingColumns(d);
  $("thead", tbl).replaceChildren(el("tr", {}, ...cols.map(([k, h]) => el("th", {
    "data-key": k, "aria-sort": k === key ? (dir > 0 ? "ascending" : "descending") : null, text: h,
    onclick: () => { S.sort = {key: k, dir: S.sort.key === k ? -S.sort.dir : 1}; renderSizing(); }}))));
  $("tbody", tbl).replaceChildren(...rows.map(r => el("tr", {class: r.pareto ? "pareto" : null, "data-rank": String(r.rank)},
    ...cols.map(c => el("td", {text: String(c[2](r))})))));
  const P = plotly();
  // dollars on the left axis; GPU-hours (hardware without a price) on the right one: the two
  // are not comparable, each kind has its own Pareto front
  const traces = [];
  for (const priced of [true, false]) {
    const group = rows.filter(r => r.priced === priced);
    if (!group.length) continue;
    const yaxis = priced || !d.priced_any ? "y" : "y2", unit = priced ? "$/video" : "GPU-h/video";
    const hover = r => `${esc(r.hardware)} × ${r.devices}, ${esc(r.plan)}` + (r.batch > 1 ? `, ${r.batch} videos/batch` : "") +
      `<br>${esc(r.latency_text ?? fmtTime(r.time_s))} per ${r.batch > 1 ? "batch" : "video"}, ${r.cost.toFixed(3)} ${unit}` +
      `<br>${esc(r.runtime ?? "")}, ${esc(r.attention_kernel ?? "")}, ${esc(r.precision_text ?? "")}`;
    const byHw = {};
    for (const r of group) (byHw[r.hardware] ||= []).push(r);
    for (const [hw, rs] of Object.entries(byHw))
      traces.push({type: "scatter", mode: "markers", name: esc(hw) + (priced ? "" : " (no price)"), yaxis,
                   x: rs.map(r => r.time_s), y: rs.map(r => r.cost), text: rs.map(hover),
                   hovertemplate: "%{text}<extra></extra>", marker: {size: 7, opacity: 0.6}});
    const front = group.filter(r => r.pareto).sort((a, b) => a.time_s - b.time_s);
    traces.push({type: "scatter", mode: "lines+markers", name: `Pareto front (${unit})`, yaxis, x: front.map(r => r.time_s),
                 y: front.map(r => r.cost), text: front.map(hover), hovertemplate: "%{text}<extra></extra>",
                 line: {color: priced ? "#b00020" : "#5a2ca0", width: 2, shape: "hv"},
                 marker: {size: 11, symbol: "star", color: priced ? "#b00020" : "#5a2ca0"}});
  }
  const shapes = d.target.latency_s ? [{type: "line", yref: "paper", y0: 0, y1: 1, x0: d.target.latency_s,
                                        x1: d.target.latency_s, line: {dash: "dot", color: "#666"}}] : [];
  const mixed = d.priced_any && !d.priced;
  P.react("sizing-plot", traces, {
    xaxis: {type: "log", title: {text: d.batched ? "latency: seconds per batch" : "latency: seconds per video"}},
    yaxis: {type: "log", title: {text: d.priced_any ? "$/video" : "GPU-h/video"}},
    ...(mixed ? {yaxis2: {type: "log", overlaying: "y", side: "right", title: {text: "GPU-h/video (no price)"}}} : {}),
    title: {text: `${d.model}: ${costName} against latency`, font: {size: 14}}, shapes, hovermode: "closest",
    legend: {font: {size: 10}}, margin: {t: 40}}, {responsive: true, displaylogo: false});
}

// ---------------------------------------------------------------- start
async function start() {
  const r = await fetch("/api/options");
  S.options = await r.json();
  if (!r.ok) { $("#error").textContent = S.options.error; return; }
  buildControls(S.options);
  applyOverrides(listOf(location.search));
  syncPlanControls();
  applyHash();
  for (const b of $$("#tabs button")) b.onclick = () => setView(b.dataset.view);
  for (const id of ["roof-by", "roof-depth", "roof-color"]) $("#" + id).onchange = () => { updateURL(); loadRoofline(); };
  for (const id of ["bd-depth", "bd-kind"]) $("#" + id).onchange = () => { updateURL(); loadBreakdown(); };
  for (const id of ["dg-stage", "dg-depth", "dg-color"]) $("#" + id).onchange = () => { updateURL(); loadDiagram(); };
  $("#cmp-pin").onclick = () => { S.base = S.ov.slice(); $("#cmp-base").value = S.base.join("\n"); updateURL(); loadCompare(); };
  let ct = null;
  $("#cmp-base").addEventListener("input", () => {
    clearTimeout(ct);
    ct = setTimeout(() => { S.base = $("#cmp-base").value.split("\n").map(s => s.trim()).filter(Boolean); updateURL(); loadCompare(); }, 300);
  });
  $("#sz-run").onclick = runSizing;
  $("#sz-cancel").onclick = () => { if (S.jobs.size) fetch(`/api/jobs/${S.jobs.size}/cancel`, {method: "POST"}); };
  $("#dl-html").addEventListener("click", async e => {
    e.preventDefault();
    const a = $("#dl-html");
    if (a.classList.contains("disabled") || !S.ok) { setStatus(a.title || "fix the configuration first"); return; }
    try {
      const st = await runJob("/api/report", {overrides: S.ov}, st => setStatus(jobText("HTML report", st)));
      setStatus("HTML report ready");
      location.href = `/download/job/${st.id}`;
    } catch (err) { setStatus(`HTML report: ${err.message}`); }
  });
  $("#copy-link").onclick = async () => {
    const p = $("#permalink");
    p.select();
    try { await navigator.clipboard.writeText(p.value); setStatus("link copied"); }
    catch (e) { document.execCommand && document.execCommand("copy"); setStatus("link selected: copy it"); }
  };
  setupZoom();
  window.addEventListener("hashchange", () => { applyHash(); updateURL(); refreshView(); });
  await recompute();
}
window.addEventListener("DOMContentLoaded", () => start().catch(e => { $("#error").textContent = String(e.message || e); }));
