"""blockforge_hw: the Amaranth block-sparse matmul engine."""
