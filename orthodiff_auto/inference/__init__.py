"""Inference: patch-based prediction of whole images (sliding window, Gaussian blending, mirroring TTA)."""
