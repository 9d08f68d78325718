"""``hayhooks bench``: measure throughput, latency and memory at several worker counts, and pick one.

- ``server``: start and stop a gunicorn server in its own process group; its processes' CPU time
  and memory (PSS and USS from ``/proc/PID/smaps_rollup``).
- ``load``: drive ``POST /NAME/run`` with ``wrk`` or the built-in generator (one separate process,
  asyncio streams, HTTP/1.1 keep-alive); parse wrk's output.
- ``report``: the table, the recommendation and the chart (matplotlib, imported only to plot).
- ``runner``: pick the pipeline and body, then start, measure and stop a server per configuration.

Every module imports only the standard library (matplotlib aside, inside the plotting function),
so the CLI starts fast and ``benchmarks/run.py`` can import these helpers with any Python 3.11+.
"""
