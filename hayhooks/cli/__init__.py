"""The ``hayhooks`` command line: start the server, and deploy, run and inspect pipelines over HTTP."""
