"""The node agent (our kubelet). Talks to the API server only through the REST client."""
