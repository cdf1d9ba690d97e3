"""specforge-wandb: a run's metrics in Weights & Biases, through the core's observer hooks."""
