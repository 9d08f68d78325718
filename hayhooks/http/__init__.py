"""The HTTP layer: ``create_app()``, middleware, security and one routes module per protocol.

Thin by design: routes adapt a protocol to the registry's serving table and the deployer; they
never read the pipelines directory themselves.
"""
