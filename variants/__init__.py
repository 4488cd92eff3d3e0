"""What a model variant is and how each one is built (registry and built-in variants: the variants issue)."""
