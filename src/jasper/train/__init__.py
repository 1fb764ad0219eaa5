"""Training: stages and freezing, the loop, checkpoints."""
