"""blockforge: block-structured pruning, int8 block-sparse images, estimation (software side)."""
__version__ = "0.1.0"
