"""PLACEHOLDER: filled in by its area."""
