from setuptools import find_packages, setup

setup(
    name="orthodiff_auto",
    version="0.3.0",
    description="Self-configuring musculoskeletal MRI segmentation and diagnosis on diffusion pretraining",
    python_requires=">=3.10",
    # Only the orthodiff_auto package is installed: no generic top-level names in site-packages.
    packages=find_packages(include=["orthodiff_auto", "orthodiff_auto.*"]),
    install_requires=[
        "torch>=2.2",
        "numpy",
        "scipy",
        "SimpleITK",
        "pandas",
        "batchgenerators",
        "acvl-utils",
        "dynamic-network-architectures",
        "blosc2",
        "matplotlib",
        "tqdm",
        "scikit-learn",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout"],
        # Reference implementation for the side-by-side benchmarks in benchmarks/.
        "bench": ["nnunetv2"],
        # TensorBoard scalars of training runs (--tensorboard); torch's SummaryWriter needs this package.
        "tensorboard": ["tensorboard"],
    },
    entry_points={"console_scripts": ["orthodiff=orthodiff_auto.cli:main"]},
)
