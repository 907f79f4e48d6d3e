"""Training: one generic loop composed with task objects (segmentation, classification, diffusion)."""
