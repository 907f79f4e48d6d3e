"""orthodiff_auto: self-configuring musculoskeletal MRI segmentation and diagnosis on diffusion pretraining."""

__version__ = "0.1.0"
