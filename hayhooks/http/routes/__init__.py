"""One module per protocol surface: run, deploy, status, metrics."""
