"""The trainer: optimizer, schedule, accumulation, torch.distributed, checkpoints, feedback."""
