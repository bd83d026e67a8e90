"""gicho (기초): JAX research code for meta-learning, NAS, spiking nets and transfer."""

import setuptools

setuptools.setup(
    name="gicho",
    version="0.1.0",
    description=(
        "JAX research codebase: meta-learning, neural architecture search, "
        "spiking neural networks and transfer learning."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=["metalearn*", "nas*", "snn*", "transfer*", "shared*", "scripts*"]
    ),
    package_data={"shared": ["embedded/*/*"]},
    include_package_data=True,
    # Floors are the versions this code was tested with (2026-11, Python 3.11).
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "chex>=0.1.92",
        "absl-py>=2.5.1",
        "tensorflow-datasets>=4.9.10",
        # tfds.data_source imports importlib_resources lazily on some paths.
        "importlib_resources>=6.0",
        "ml-collections>=1.1.0",
        "orbax-checkpoint>=0.12.8",
        "numpy>=2.0",
        "pillow>=11.0",
        "matplotlib>=3.9",
    ],
    extras_require={
        # pytest-xdist: the suite is XLA compiles; two workers cut it ~20% on 2 cores
        "test": ["pytest>=9.0", "pytest-xdist>=3.8", "ruff>=0.17.6"],
    },
)
