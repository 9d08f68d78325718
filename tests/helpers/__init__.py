"""What the tests share: sample pipelines, real server processes, a real load balancer, kustomize."""
