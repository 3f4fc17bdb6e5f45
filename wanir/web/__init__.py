"""``wanir serve``: a local web page to explore and size configurations.

Needs the optional extra ``web`` (Starlette, uvicorn and Plotly, whose JavaScript the page
loads from the installed package: nothing is fetched from the network). Importing this
package imports none of them; :mod:`wanir.web.app` (:func:`~wanir.web.app.create_app`,
:func:`~wanir.web.app.serve`) does, and ``wanir serve`` imports it when it runs
(:mod:`wanir.web.command`).
"""
