"""The core: pipelines directory → loader → registry, kept in step by the reconciler and watcher.

Imports nothing from the HTTP layer: a protocol is an adapter over what this package loads.
"""
