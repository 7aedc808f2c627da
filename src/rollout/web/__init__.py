"""``rollout web``: the read-only dashboard, a thin web shell over the store and the reports.

    create_app(runbook) -> FastAPI        the app (routes.py), its headers and errors (app.py)
    bind(host, port) -> socket            the socket, or one clear error (serve.py)
    serve(app, socket)                    uvicorn on it until Ctrl-C

Pages are built the way the written reports are (report/html.py: escaped text, inline CSS);
the only script is the package's own static/live.js, which follows a running deployment
through Server-Sent Events (live.py).
"""

from rollout.web.app import create_app
from rollout.web.serve import bind, serve

__all__ = ["bind", "create_app", "serve"]
