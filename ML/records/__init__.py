"""What a run writes: its folder and logs, checkpoints, and provenance."""
