"""The operations page: nodes, instances, logs, reruns and backfills in a browser.

``tidesync ui`` (``cli``) serves it with the standard library's HTTP server (``server``) over the
project's state store; ``app`` routes requests, checks the token and runs the actions through
``tidesync.scheduler.ops`` (the code the commands use); ``data`` reads what is shown (the JSON
API and the pages alike), ``pages`` draws the HTML, ``svg`` the charts and the dependency
graph, ``openapi`` describes ``/api/``. Assets are in ``static/``; nothing is fetched at run
time. See ``docs/ui.md``.
"""
