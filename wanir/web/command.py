"""The ``wanir serve`` command: its arguments and its entry point (the CLI registers it with
:func:`add_parser`)."""
from __future__ import annotations

import importlib.util

from wanir.errors import WanirError

#: modules the command needs, from the optional extra ``web``
NEEDS = ("starlette", "uvicorn", "plotly")


def add_parser(sub) -> None:
    """Add ``serve`` to the CLI's subcommands."""
    s = sub.add_parser("serve", help="a local web page: change the model, workload, hardware or plan and see the "
                                     "estimate, roofline, breakdown, diagram, comparison and sizing (extra 'web')")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else is reachable "
                        "from other machines and prints a warning)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    s.add_argument("--config-dir", default=None, help="your own config directory (searched first)")
    s.add_argument("--allow-files", default=None, metavar="DIR",
                   help="let the page read models from DIR with model.from= (default: no file is read)")
    s.add_argument("--open", action="store_true", help="open the page in the default browser")
    s.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise WanirError(f"wanir serve needs the 'web' extra (missing: {', '.join(missing)}); "
                         "install it with: pip install 'wanir[web]'")
    if not 0 <= args.port <= 65535:
        raise WanirError(f"--port must be in [0, 65535], got {args.port}")
    from .app import serve  # late import: lazy command loading (the web app and the extra load on serve)

    try:
        serve(args.host, args.port, args.config_dir, args.allow_files, args.open)
    except KeyboardInterrupt:   # pragma: no cover - interactive stop
        pass
    return 0
