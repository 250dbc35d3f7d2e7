"""The object model: pure functions on dicts (kinds, defaulting, validation, patching, tables). No I/O."""
