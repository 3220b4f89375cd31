"""PLACEHOLDER: filled in by its area."""
class KVCache:  # PLACEHOLDER until attention lands
    pass
__all__ = ["KVCache"]
