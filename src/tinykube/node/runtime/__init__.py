"""The container runtime: images, sandboxes, runc + conmon. Knows no API objects."""
