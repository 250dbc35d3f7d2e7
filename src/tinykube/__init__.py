"""tinykube: a Kubernetes-compatible Pod platform."""
