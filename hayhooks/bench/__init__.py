"""``hayhooks bench``, and the one harness every server measurement and real-process test uses.

- ``server``: the harness: start a server (gunicorn, ``hayhooks run`` or any command) in its own
  process group on a free loopback port, wait until it is ready, read its workers, CPU time and
  memory (PSS and USS) from ``/proc``, always stop it; a tiny HTTP client for control requests.
- ``cpu``: who used the CPU during a measurement: the server, each worker, the load generator, the rest.
- ``load``: drive ``POST /NAME/run`` with ``wrk`` or the built-in generator (one separate process,
  asyncio streams, HTTP/1.1 keep-alive); parse wrk's output.
- ``serving``: the server ``hayhooks bench`` measures, ready once every worker serves the pipeline.
- ``report``: the table, the recommendation and the chart (matplotlib, imported only to plot).
- ``runner``: pick the pipeline and body, then start, measure and stop a server per configuration.

Every module imports only the standard library and ``hayhooks.pipelines.names`` (matplotlib aside,
inside the plotting function), so the CLI starts fast and ``benchmarks/run.py`` and the tests can
import the harness with any Python 3.11+.
"""
