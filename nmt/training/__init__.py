"""Training: the loop (trainer), loss, optimisers and schedules, checkpoints, DDP, one run end to end."""
