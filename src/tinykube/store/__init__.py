"""Storage behind one Store protocol: revisions, compare-and-swap, watch from a revision."""
