"""The raw dataset format: image I/O, views, dataset description and validation, findings tables; what a
preprocessed folder holds beside its arrays (``preprocessed``); canonical orientation and cropping."""
