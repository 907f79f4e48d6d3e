"""The raw dataset format: image I/O, views, dataset description and validation."""
