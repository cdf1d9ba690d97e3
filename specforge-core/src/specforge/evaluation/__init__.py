"""Evaluation by real speculative decoding: acceptance length τ, lossless by construction."""
