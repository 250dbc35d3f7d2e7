"""Controllers: watch-driven loops that talk to the API server through its REST API."""
