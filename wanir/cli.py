"""The ``wanir`` command line: a thin layer over the Python API.

    wanir estimate [OVERRIDES...] [--format table|json|md|csv]
    wanir config   [OVERRIDES...]
    wanir ops
    wanir spec FILE.yaml [--format ...]
    wanir inspect PATH [--format text|json]
"""
from __future__ import annotations

import argparse
import sys

from .errors import WanirError


def _add_common(p):
    p.add_argument("overrides", nargs="*", help="Hydra-style overrides: group=option or key=value")
    p.add_argument("--config-dir", default=None, help="your own config directory (searched first)")


def cmd_estimate(args) -> int:
    from wanir.backends.report import render
    from wanir.estimate import estimate

    est = estimate(args.overrides, args.config_dir)
    for line in est.extra.get("inferred", []):  # model.from: what was read from the files
        print(line, file=sys.stderr)
    out = render(est, args.format)
    if out is not None:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
        for w in est.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_config(args) -> int:
    from omegaconf import OmegaConf

    from wanir.config import load_config

    from wanir.frontends.checkpoint import apply_model_from

    cfg = load_config(args.overrides, args.config_dir)
    cfg, inferred = apply_model_from(cfg)  # model.from: components read from a checkpoint
    for line in inferred:
        print(line, file=sys.stderr)
    sys.stdout.write(OmegaConf.to_yaml(cfg))
    return 0


def cmd_ops(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from wanir.ops import OPS

    if args.format == "json":
        import json
        print(json.dumps({k: {"category": o.category, "attrs": [a.name for a in o.attrs], "doc": o.doc}
                          for k, o in sorted(OPS.items())}, indent=2))
        return 0
    t = Table(title=f"{len(OPS)} op kinds")
    for c in ("op", "category", "attributes", "description"):
        t.add_column(c)
    for k, o in sorted(OPS.items(), key=lambda kv: (kv[1].category, kv[0])):
        t.add_row(k, o.category, ", ".join(a.name + ("" if a.required else "?") for a in o.attrs), o.doc)
    Console().print(t)
    return 0


def cmd_spec(args) -> int:
    from wanir.backends.report import render
    from wanir.estimate import estimate_graph
    from wanir.frontends.spec import load_spec

    graph = load_spec(args.file)
    est = estimate_graph(graph)
    out = render(est, args.format)
    if out is not None:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


def cmd_inspect(args) -> int:
    from wanir.frontends.checkpoint import inspect

    ins = inspect(args.path)
    if args.format == "json":
        import json
        print(json.dumps(ins.to_dict(), indent=2))
    else:
        sys.stdout.write(ins.render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wanir", description="FLOPs, bytes, memory and time of Wan2.1 video generation")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("estimate", help="estimate one generation (default: Wan2.1 T2V-14B, 1280x720x81)")
    _add_common(e)
    e.add_argument("--format", choices=("table", "json", "md", "csv"), default="table")
    e.set_defaults(func=cmd_estimate)

    c = sub.add_parser("config", help="print the resolved configuration")
    _add_common(c)
    c.set_defaults(func=cmd_config)

    o = sub.add_parser("ops", help="list the op kinds with their categories")
    o.add_argument("--format", choices=("table", "json"), default="table")
    o.set_defaults(func=cmd_ops)

    s = sub.add_parser("spec", help="estimate a model described in a YAML graph spec")
    s.add_argument("file")
    s.add_argument("--format", choices=("table", "json", "md", "csv"), default="table")
    s.set_defaults(func=cmd_spec)

    i = sub.add_parser("inspect", help="infer a model's hyperparameters and parameter count by module from its "
                                      "config.json, .safetensors header, .pth state dict or directory")
    i.add_argument("path")
    i.add_argument("--format", choices=("text", "json"), default="text")
    i.set_defaults(func=cmd_inspect)
    return p


def main(argv=None) -> int:
    """Entry point of the ``wanir`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WanirError as e:
        print(f"wanir: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
