"""United Cars: the example web app that rollout deploys in its demo and tests.

Importing the package has no side effects; the ASGI app object lives in
``united_cars.main`` so that ``uvicorn united_cars.main:app`` works.
"""

from united_cars.app import create_app
from united_cars.settings import Settings

__all__ = ["Settings", "create_app"]
