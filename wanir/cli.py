"""The ``wanir`` command line: a thin layer over the Python API.

    wanir estimate [OVERRIDES...] [--format table|json|md|csv] [--by stage|scope|kind --depth N]
    wanir serve    [--host 127.0.0.1] [--port 8765] [--config-dir DIR] [--allow-files DIR] [--open]
    wanir hardware [--config-dir DIR] [--format table|json|md]
    wanir config   [OVERRIDES...]
    wanir ops
    wanir spec FILE.yaml [--format ...]
    wanir inspect PATH [--format text|json]
    wanir render [OVERRIDES...] [--stage NAME] [--depth N] [--color bound|time|none] -o FILE.{svg,png,pdf,dot}
    wanir sweep  OVERRIDES-WITH-SWEEPS... -o DIR
    wanir report [OVERRIDES...] -o report.html
    wanir validate [FILE.csv] [--runtime NAME] [--class CLASS] [--by-class] [--write-classes]
                   [--format table|json|md] [--fail-above PCT]
    wanir verify [OVERRIDES...] [--stage NAME] [--depth N] [--format table|json]
    wanir plan TRAFFIC.yaml [--hardware a,b] [--devices 1,2,4,8] [--top N] [--format table|json|csv] [-o DIR]
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

import yaml

from . import jsonout
from .backends import parallel, report
from .backends.display import rich_table
from .backends.error_range import RISKS
from .errors import ConfigError, WanirError
from .estimate import estimate, estimate_graph
from .hardware import list_hardware
from .limits import MAX_DEVICES, MAX_JOBS, check_int_arg, usable_cpus
from .ops import OPS
from .paths import CONFIG_DIR
from .resolve import explain_lines, resolve
from .safeio import printable, short
from .scenario import thaw

# What every command needs sits above (the ``wanir`` package loads it anyway). A command that
# needs more names its modules in NEEDS (or, declaring its own arguments, in MODULE_COMMANDS);
# they are loaded when that command runs (:func:`_load`), so `wanir estimate` loads neither the
# web app nor plotting, calibration, checkpoint-reading or sweep code.

#: command -> the modules its handler takes after ``args``, loaded when the command runs
NEEDS = {
    "size": ("wanir.backends.sizing", "wanir.size_optimizations"),
    "spec": ("wanir.frontends.spec",),
    "inspect": ("wanir.frontends.checkpoint",),
    "render": ("wanir.frontends.spec", "wanir.backends.graphviz"),
    "sweep": ("wanir.backends.sweep",),
    "report": ("wanir.frontends.spec", "wanir.backends.html"),
    "plan": ("wanir.backends.capacity.command",),
}
#: commands whose module declares their arguments (``add_parser``) and runs them; loaded when
#: one of them runs or for --help
MODULE_COMMANDS = {"serve": "wanir.web.command", "validate": "wanir.backends.validate",
                   "calibrate": "wanir.backends.calibrate", "verify": "wanir.verify"}


def _load(names) -> list:
    """The modules ``names`` (dotted names), imported on first use (lazy command loading)."""
    return [importlib.import_module(name) for name in names]  # late import: lazy command loading


def _add_common(p):
    p.add_argument("overrides", nargs="*", help="Hydra-style overrides: group=option or key=value")
    p.add_argument("--config-dir", default=None, help="your own config directory (searched first)")


def cmd_estimate(args) -> int:
    est = estimate(args.overrides, args.config_dir)
    for line in est.extra.get("inferred", []):  # model.from: what was read from the files
        print(line, file=sys.stderr)
    if est.parallel is not None and args.by != "stage":
        _refuse_multi_device(f"estimate --by {args.by}", "use --by stage for the per-device table")
    if est.parallel is not None and args.format != "json":   # per-device table of the parallel plan
        out = parallel.render_cost(parallel.multi_device_cost(est), args.format,
                                   est.parallel["total"].get("time_range_s"))
        if out is not None:
            sys.stdout.write(out if out.endswith("\n") else out + "\n")
        for w in est.warnings:
            print(f"warning: {w}", file=sys.stderr)
        return 0
    if args.by != "stage":
        out = report.render_scopes(est, args.format, depth=args.depth, by=args.by)
    else:
        out = report.render(est, args.format)
    if out is not None:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
        for w in est.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def _refuse_multi_device(what: str, hint: str) -> None:
    """Refuse a command that cannot show a multi-device plan (one line, exit 2)."""
    raise ConfigError(f"{what} works on one device's pipeline graph and cannot show the multi-device plan "
                      f"(parallel=...); {hint}")


def cmd_size(args, sizing, so) -> int:
    if args.latency is None and args.throughput is None:
        print("wanir: error: give a target: --latency SECONDS and/or --throughput VIDEOS_PER_HOUR", file=sys.stderr)
        return 2
    devices = sizing.parse_devices(args.devices) if args.devices else None
    hw = [h for h in args.hardware.split(",") if h] if args.hardware else None
    _note_jobs_cap(args.jobs)
    if args.optimizations or args.allow:     # also search the allowed optimizations (docs/optimizations.md)
        if args.risk != "point":
            print("wanir: error: --risk upper ranks plain sizing only; drop --optimizations/--allow or --risk",
                  file=sys.stderr)
            return 2
        res = so.size_with_optimizations(args.overrides, args.config_dir, allow=so.parse_allow(args.allow or ""),
                                         latency_s=args.latency, throughput=args.throughput, hardware=hw,
                                         devices=devices, prices=sizing.parse_prices(args.price), jobs=args.jobs)
    else:
        res = sizing.size(args.overrides, args.config_dir, latency_s=args.latency, throughput=args.throughput,
                          hardware=hw, devices=devices, prices=sizing.parse_prices(args.price), risk=args.risk,
                          jobs=args.jobs)
    out = sizing.render(res, args.format, top=args.top, show_all=args.all)
    if out is not None:
        sys.stdout.write(out + "\n")
    return 0


def cmd_hardware(args) -> int:
    hws = list_hardware(args.config_dir)
    recs = [h.summary() for h in hws]
    if args.format == "json":
        print(jsonout.dumps(recs, indent=2))
        return 0

    def num(v, f="{:.4g}"):
        return "-" if v is None else f.format(v)

    head = ["name", "description", "BF16 TFLOP/s", "FP8 TFLOP/s", "vector TFLOP/s", "memory GiB", "bandwidth TB/s",
            "GPU link GB/s", "host link GB/s", "family", "inputs d/r/m/a"]
    body = [[r["name"], r["description"], num(r["bf16_tflops"]), num(r["fp8_tflops"]), num(r["vector_tflops"]),
             num(r["memory_gib"]), num(r["bandwidth_tbps"]), num(r["gpu_link_gbps"]), num(r["host_link_gbps"]),
             r.get("family", "-"), _source_counts(r)]
            for r in recs]
    if args.format == "md":
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for b in body:
            print("| " + " | ".join(b) + " |")
        return 0
    Console, Table = rich_table()
    t = Table(title=f"{len(recs)} devices (select one with hardware=NAME)",
              caption="dense peaks derived from the microarchitecture; inputs d/r/m/a: how many of the device's "
                      "values are datasheet/reported/measured/assumed (per-value sources in each YAML file; kernel "
                      "constants in wanir/data/kernels.yaml)")
    for h in head:
        t.add_column(h, justify="left" if h in ("name", "description") else "right")
    for b in body:
        t.add_row(*b)
    Console().print(t)
    return 0


def _source_counts(rec: dict) -> str:
    """'datasheet/reported/measured/assumed' counts of a hardware summary's inputs."""
    c = rec.get("sources") or {}
    return "/".join(str(c.get(k, 0)) for k in ("datasheet", "reported", "measured", "assumed"))


def cmd_config(args) -> int:
    sc = resolve(args.overrides, args.config_dir)
    if getattr(args, "explain", False):   # every value with where it came from
        sys.stdout.write("\n".join(explain_lines(sc)) + "\n")
        return 0
    for line in sc.inferred or ():   # model.from: components read from a checkpoint
        print(line, file=sys.stderr)
    sys.stdout.write(yaml.safe_dump(thaw(sc.config), sort_keys=False, default_flow_style=False))
    return 0


def cmd_ops(args) -> int:
    if args.format == "json":
        print(jsonout.dumps({k: {"category": o.category, "attrs": [a.name for a in o.attrs], "doc": o.doc}
                          for k, o in sorted(OPS.items())}, indent=2))
        return 0
    Console, Table = rich_table()
    t = Table(title=f"{len(OPS)} op kinds")
    for c in ("op", "category", "attributes", "description"):
        t.add_column(c)
    for k, o in sorted(OPS.items(), key=lambda kv: (kv[1].category, kv[0])):
        t.add_row(k, o.category, ", ".join(a.name + ("" if a.required else "?") for a in o.attrs), o.doc)
    Console().print(t)
    return 0


def cmd_spec(args, spec) -> int:
    est = _estimate_for(args, spec)
    out = report.render(est, args.format)
    if out is not None:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


def cmd_inspect(args, checkpoint) -> int:
    ins = checkpoint.inspect(args.path)
    if args.format == "json":
        print(jsonout.dumps(ins.to_dict(), indent=2))
    else:
        sys.stdout.write(ins.render())
    return 0


def _estimate_for(args, spec):
    """The Estimate a spec/render/report command works on: a YAML spec (``spec FILE``,
    ``--spec``; read by the module ``spec``, wanir.frontends.spec) or the pipeline."""
    path = getattr(args, "spec", None) or getattr(args, "file", None)
    if path:
        return estimate_graph(spec.load_spec(path))
    return estimate(args.overrides, args.config_dir)


def cmd_render(args, spec, graphviz) -> int:
    est = _estimate_for(args, spec)
    graph = est.graph
    if est.parallel is not None:   # one device's graph of the plan, communication nodes included
        graph = parallel.multi_device_cost(est).graph
    path = graphviz.render(graph, args.output, stage=args.stage, depth=args.depth, color=args.color)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _note_jobs_cap(jobs) -> None:
    """Say so when ``-j`` asks for more processes than this process may use CPU cores."""
    if jobs is not None and jobs > usable_cpus():
        print(f"wanir: note: -j {jobs} capped at {usable_cpus()} processes (the CPU cores this process may "
              f"use; more would only add memory)", file=sys.stderr)


def cmd_sweep(args, sweep) -> int:
    _note_jobs_cap(args.jobs)
    try:
        res, files = sweep.sweep_to_dir(args.overrides, args.output, args.config_dir, progress=not args.quiet,
                                  fmt=args.plot_format, jobs=args.jobs, overwrite=args.overwrite)
    except sweep.SweepInterrupted as e:
        print(f"wanir: {e}", file=sys.stderr)
        return 130
    t = res.timing
    print(f"{t['points']} points in {t['total_s']:.2f} s ({t['jobs']} process(es); "
          f"estimating {t['estimate_s']:.2f} s of it summed over processes)", file=sys.stderr)
    for f in files:
        print(f"wrote {f}", file=sys.stderr)
    return 0


def cmd_report(args, spec, html) -> int:
    est = _estimate_for(args, spec)
    if est.parallel is not None:
        _refuse_multi_device("report", "write the report with parallel=single, and get the per-device figures "
                                       "with `wanir estimate` (--format json|md|csv)")
    path = html.write_report(est, args.output, depth=args.depth)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_plan(args, command) -> int:
    return command.run(args)


def _add_plan(sub) -> None:
    """``wanir plan``: capacity planning under request traffic (docs/capacity.md)."""
    pl = sub.add_parser("plan", help="replicas, latency and monthly cost of each deployment for a traffic file "
                                     "(request classes, arrivals, SLO)")
    pl.add_argument("traffic", help="traffic YAML file (docs/capacity.md)")
    pl.add_argument("--hardware", default=None, help="comma-separated hardware names (default: every GPU)")
    pl.add_argument("--devices", default=None, help="comma-separated devices per replica (default: 1,2,4,8)")
    pl.add_argument("--price", action="append", default=[], metavar="HW=USD",
                    help="USD per GPU-hour of a hardware (repeatable; over the file's prices)")
    pl.add_argument("--top", type=int, default=None, help="rows to show (table default 15; json/csv: every row)")
    pl.add_argument("--format", choices=("table", "json", "csv"), default="table")
    pl.add_argument("-o", "--output", default=None, metavar="DIR", help="write the plots and report.html to DIR")
    pl.add_argument("--no-simulate", action="store_true", help="closed forms only (no simulation check)")
    pl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pl.add_argument("--config-dir", default=None, help="your own config directory (searched first)")
    pl.set_defaults(func=cmd_plan)


def _description() -> str:
    """The top-level help text: what wanir answers and the models it covers (the built-in
    model options, read from wanir/configs/model/)."""
    models = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
    return (f"FLOPs, bytes, memory and time of Wan video generation, on one GPU or many. Models "
            f"(model=NAME): {', '.join(models)}; other Wan2.1/Wan2.2 checkpoints with model.from=PATH "
            f"(a config.json, .safetensors, .pth or a model folder); any other network as a YAML graph spec "
            f"(wanir spec).")


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose refusals are one line, as every other error of the CLI: exit 2
    with ``wanir: error: ...`` (argparse prints its usage first), the user's text cut and its
    control characters made visible."""

    def error(self, message: str):
        where = self.prog.removeprefix("wanir").strip()
        sys.stderr.write(f"wanir: error: {where + ': ' if where else ''}{printable(message, 300)}\n")
        sys.exit(2)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``command`` (the command about to run, None for all) spares
    declaring the other commands' arguments and loading their modules: they are added as
    names only."""
    p = _Parser(prog="wanir", description=_description() if command is None else None)
    sub = p.add_subparsers(dest="command", required=True)
    for name, add in PARSERS.items():
        if command is None or name == command:
            add(sub)
        else:
            sub.add_parser(name, add_help=False)   # a name only: it parses nothing in this run
    return p


def _parser_estimate(sub) -> None:
    e = sub.add_parser("estimate", help="estimate one generation (default: Wan2.1 T2V-14B, 1280x720x81)")
    _add_common(e)
    e.add_argument("--format", choices=("table", "json", "md", "csv"), default="table")
    e.add_argument("--by", choices=("stage", "scope", "kind"), default="stage",
                   help="break the time down per stage (default), per scope, or per op kind within a scope")
    e.add_argument("--depth", type=int, default=2,
                   help="with --by scope|kind: scope levels below the stage to group by (default 2)")
    e.set_defaults(func=cmd_estimate)


def _parser_size(sub) -> None:
    z = sub.add_parser("size", help="rank hardware x device count x parallel plan by cost per video for a target")
    _add_common(z)
    z.add_argument("--latency", type=float, default=None, help="target seconds per video")
    z.add_argument("--throughput", type=float, default=None, help="target videos per hour")
    z.add_argument("--price", action="append", default=[], metavar="HW=USD",
                   help="USD per GPU-hour of a hardware (repeatable); else the YAML's price_usd_per_gpu_hour")
    z.add_argument("--hardware", default=None, help="comma-separated hardware names (default: every GPU)")
    z.add_argument("--devices", default=None, help="comma-separated device counts (default: 1,2,4,8,16,32)")
    z.add_argument("--top", type=int, default=None, help="rows to show (table default 20; json default: every "
                                                             "evaluated row)")
    z.add_argument("--all", action="store_true", help="also show candidates that miss the target")
    z.add_argument("--format", choices=("table", "json"), default="table")
    z.add_argument("--risk", choices=RISKS, default="point",
                   help="rank by the estimate (point) or by the upper end of its time range (upper; docs/time-model.md)")
    z.add_argument("--optimizations", action="store_true",
                   help="also rank the combinations of the --allow optimizations (docs/optimizations.md)")
    z.add_argument("--allow", default=None, metavar="NAMES",
                   help="comma-separated optimizations to combine, e.g. fp8,teacache,radial,compiled")
    z.add_argument("-j", "--jobs", type=int, default=None,
                   help="processes to spread the plans over (default: one per CPU core, up to 8, when a batch has "
                        "enough plans to pay for them; never more than the usable CPU cores); the ranking is the same")
    z.set_defaults(func=cmd_size)


def _parser_hardware(sub) -> None:
    hw = sub.add_parser("hardware", help="list the known devices (built-in, --config-dir and entry points)")
    hw.add_argument("--config-dir", default=None, help="your own config directory (its hardware/*.yaml are listed)")
    hw.add_argument("--format", choices=("table", "json", "md"), default="table")
    hw.set_defaults(func=cmd_hardware)


def _parser_config(sub) -> None:
    c = sub.add_parser("config", help="print the resolved configuration")
    _add_common(c)
    c.add_argument("--explain", action="store_true",
                   help="print each value with its source: user, runtime, model, file (model.from), plan or default")
    c.set_defaults(func=cmd_config)


def _parser_ops(sub) -> None:
    o = sub.add_parser("ops", help="list the op kinds with their categories")
    o.add_argument("--format", choices=("table", "json"), default="table")
    o.set_defaults(func=cmd_ops)


def _parser_spec(sub) -> None:
    s = sub.add_parser("spec", help="estimate a model described in a YAML graph spec")
    s.add_argument("file")
    s.add_argument("--format", choices=("table", "json", "md", "csv"), default="table")
    s.set_defaults(func=cmd_spec)


def _parser_inspect(sub) -> None:
    i = sub.add_parser("inspect", help="infer a model's hyperparameters and parameter count by module from its "
                                      "config.json, .safetensors header, .pth state dict or directory")
    i.add_argument("path")
    i.add_argument("--format", choices=("text", "json"), default="text")
    i.set_defaults(func=cmd_inspect)


def _parser_render(sub) -> None:
    r = sub.add_parser("render", help="draw the architecture with Graphviz (.svg, .png, .pdf or .dot)")
    _add_common(r)
    r.add_argument("-o", "--output", required=True, help="output file; the suffix picks the format")
    r.add_argument("--stage", default=None, help="draw only this stage (e.g. diffusion_core)")
    r.add_argument("--depth", type=int, default=2, help="scope levels below each stage drawn as clusters; "
                                                        "deeper scopes are one box with summed costs (default 2)")
    r.add_argument("--color", choices=("bound", "time", "none"), default="bound")
    r.add_argument("--spec", default=None, help="draw the graph of a YAML spec instead of the pipeline")
    r.set_defaults(func=cmd_render)


def _parser_sweep(sub) -> None:
    w = sub.add_parser("sweep", help="estimate the cross product of Hydra sweep overrides (a=1,2 b=range(...)); "
                                     "writes DIR/results.csv and plots")
    _add_common(w)
    w.add_argument("-o", "--output", required=True, help="output directory")
    w.add_argument("--plot-format", choices=("png", "svg", "pdf"), default="png")
    w.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    w.add_argument("--overwrite", action="store_true",
                   help="replace an earlier sweep in the output directory (its results.csv, run.json and plots)")
    w.add_argument("-j", "--jobs", type=int, default=None,
                   help="processes to spread the points over (default: one per CPU core, up to 8, for sweeps of "
                        "more than 32 points; else 1; never more than the usable CPU cores)")
    w.set_defaults(func=cmd_sweep)


def _parser_report(sub) -> None:
    h = sub.add_parser("report", help="write a self-contained HTML report (table, diagram, plots, notes)")
    _add_common(h)
    h.add_argument("-o", "--output", required=True, help="output .html file")
    h.add_argument("--depth", type=int, default=2, help="diagram depth (default 2)")
    h.add_argument("--spec", default=None, help="report on the graph of a YAML spec instead of the pipeline")
    h.set_defaults(func=cmd_report)


def _module_parser(name: str):
    """The function adding command ``name`` of MODULE_COMMANDS: its module's ``add_parser``
    (the module is loaded when it is called)."""
    def add(sub) -> None:
        module, = _load([MODULE_COMMANDS[name]])
        if name == "verify":
            module.add_parser(sub, _add_common)
        else:
            module.add_parser(sub)
    return add


#: every command, in the order --help lists them: the function that declares its arguments
PARSERS = {
    "estimate": _parser_estimate, "size": _parser_size, "hardware": _parser_hardware, "config": _parser_config,
    "ops": _parser_ops, "spec": _parser_spec, "inspect": _parser_inspect, "render": _parser_render,
    "sweep": _parser_sweep, "report": _parser_report,
    **{name: _module_parser(name) for name in MODULE_COMMANDS},
    "plan": _add_plan,
}


def _check_args(args) -> None:
    """Numbers given as options are bounded before any work (docs/limits.md)."""
    if getattr(args, "depth", None) is not None:
        check_int_arg("--depth", args.depth, 0, 64)
    if getattr(args, "top", None) is not None:
        check_int_arg("--top", args.top, 1, 1_000_000)
    if getattr(args, "jobs", None) is not None:
        check_int_arg("-j/--jobs", args.jobs, 1, MAX_JOBS)
    for name in ("latency", "throughput"):
        v = getattr(args, name, None)
        if v is not None and not (math.isfinite(v) and 0 < v <= 1e9):
            raise ConfigError(f"--{name} must be a finite number in (0, 1e9], got {short(v)}")
    devices = getattr(args, "devices", None)
    if devices:
        items = devices.split(",")
        if len(items) > 64 or not all(x.strip().isdigit() and len(x.strip()) <= 6 and
                                      1 <= int(x) <= MAX_DEVICES for x in items):
            raise ConfigError(f"--devices {short(devices, 60)}: a comma-separated list of at most 64 "
                              f"integers in [1, {MAX_DEVICES}]")
    for it in getattr(args, "price", None) or ():
        _, _, val = str(it).partition("=")
        try:
            ok = math.isfinite(float(val)) and 0 <= float(val) <= 1e6
        except ValueError:
            ok = True   # the sizing backend words a malformed item
        if not ok:
            raise ConfigError(f"--price {short(it, 60)}: USD per GPU-hour must be a finite number in [0, 1e6]")


def main(argv=None) -> int:
    """Entry point of the ``wanir`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None   # else --help, or an error: every command
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not sys.stdout.isatty():
        # piped or captured output: wide tables instead of rich's 80-column default
        cols = os.environ.get("COLUMNS", "")
        if not cols.isdigit() or int(cols) < 160:
            os.environ["COLUMNS"] = "200"
    try:
        _check_args(args)
        return args.func(args, *_load(NEEDS.get(args.command, ())))
    except WanirError as e:
        print(f"wanir: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover
        return 0
    except KeyboardInterrupt:
        print("wanir: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
