"""ASGI entry point: ``uvicorn united_cars.main:app``.

Kept apart from the package's ``__init__`` so that only the server process reads the
environment and builds an app; tests import ``create_app`` without this side effect.
"""

from united_cars.app import create_app

app = create_app()
