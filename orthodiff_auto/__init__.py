"""orthodiff_auto: self-configuring musculoskeletal MRI segmentation and diagnosis on diffusion pretraining."""

import os

# Before torch is imported (it reads this once): OpenMP threads that wait passively instead of spinning.
# On a CPU shared with other processes (data-loader workers, parallel runs) spinning threads made a training
# step 11x slower (documentation/benchmarks.md); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
