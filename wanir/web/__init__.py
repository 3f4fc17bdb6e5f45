"""``wanir serve``: a local web page to explore and size configurations.

Needs the optional extra ``web`` (Starlette, uvicorn and Plotly, whose JavaScript the page
loads from the installed package: nothing is fetched from the network). Importing this
package imports none of them; :func:`create_app` and :func:`serve` do.
"""
from __future__ import annotations


def create_app(*args, **kw):
    """The Starlette application (see :func:`wanir.web.app.create_app`)."""
    from .app import create_app as make  # late import: importing the package imports none of the web app
    return make(*args, **kw)


def serve(*args, **kw):
    """Run the server (see :func:`wanir.web.app.serve`)."""
    from .app import serve as run  # late import: importing the package imports none of the web app
    return run(*args, **kw)
