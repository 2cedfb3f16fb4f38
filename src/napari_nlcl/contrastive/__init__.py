"""Contrastive toolkit: samplers (positives/negatives), encoders, losses."""
