"""blockforge_sim: cocotb benches for the engine."""
