"""``defr serve``: a trained DEFR model behind Ray Serve, with an HTTP API and a web page (docs/serving.md).

``config.py`` (what is served and where, as plain data; the token check's pieces), ``uploads.py`` (the
request limits and the decoding of an upload), ``deployment.py`` (*Ray Serve*: the replica and its routes),
``server.py`` (*Ray Serve*: start, wait for SIGTERM, stop), ``page/`` (the static page).
"""
