"""The Kubernetes API server: aiohttp application, auth, discovery, CRUD and watch handlers."""
