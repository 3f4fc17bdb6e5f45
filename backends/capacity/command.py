"""``wanir plan TRAFFIC.yaml``: the command's body (the CLI parses its arguments)."""
from __future__ import annotations

import sys

from wanir.backends import sizing
from wanir.errors import ConfigError

from . import planner, render
from . import traffic as tr


def run(args) -> int:
    """Plan the traffic file ``args.traffic``; print the table / JSON / CSV; with
    ``args.output`` write the plots and report.html there. Returns the exit status."""
    t = tr.load(args.traffic)
    hw = [h for h in args.hardware.split(",") if h] if args.hardware else None
    devices = sizing.parse_devices(args.devices) if args.devices else None
    if devices and max(devices) > tr.MAX_DEVICES_PER_REPLICA:
        raise ConfigError(f"--devices {args.devices[:60]}: at most {tr.MAX_DEVICES_PER_REPLICA} devices per replica")
    prices = sizing.parse_prices(args.price)
    report = None
    if args.output:      # refuse a bad output directory before the work
        from . import report  # late import: matplotlib loads only with -o
        report.check_output_dir(args.output)
    res = planner.plan(t, hardware=hw, devices=devices, prices=prices, config_dir=args.config_dir,
                       simulate=not args.no_simulate, progress=sys.stderr.isatty() and not args.quiet)
    out = render.render(res, args.format, top=args.top)
    if out is not None:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    if report is not None:
        for f in report.write_dir(res, args.output):
            print(f"wrote {f}", file=sys.stderr)
    return 0
