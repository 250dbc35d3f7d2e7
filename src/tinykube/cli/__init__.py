"""The tinykube command line."""
