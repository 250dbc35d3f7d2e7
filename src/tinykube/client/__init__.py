"""The small async REST client used by controllers and node agents."""
