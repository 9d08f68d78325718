"""What the tests share: sample pipelines, real server processes, their metrics, a real load balancer,
kustomize, the Dockerfile read, and canned server answers."""
