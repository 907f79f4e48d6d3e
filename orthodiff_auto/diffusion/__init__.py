"""Self-supervised 3D diffusion pretraining (one DDPM per view) whose encoder initialises downstream networks.

- ``schedule``: noise schedules and the forward process (pure functions, any number of spatial dims);
- ``sampler``: DDIM sampling and the denoising figure;
- ``denoiser``: the planned U-Net with FiLM timestep conditioning (encoder names identical to the U-Net's);
- ``holdout``: which scans are held out of training for the validation loss;
- ``task``: the diffusion ``TrainingTask`` for the generic loop (patches, loss, EMA);
- ``export``: encoder checkpoint export and ``load_pretrained_encoder`` for fine-tuning.

Importing this package imports nothing heavy; import the submodules.
"""
