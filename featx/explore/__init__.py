"""``featx explore``: a local web app over feature stores and runs (the ``explore`` extra: starlette, uvicorn).

:mod:`.collection` (one store as the app shows it, re-read when it changes), :mod:`.maps` (PCA and UMAP
coordinates), :mod:`.runs` (fit runs, held-out predictions, audit flags), :mod:`.explorer` (every request as
plain Python), :mod:`.server` (the ASGI routes and guards), :mod:`.launch` (port, token, browser) and
``static/`` (the page: one HTML file, one script, one style sheet; nothing from a CDN).
"""
