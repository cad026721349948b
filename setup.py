"""rrm: reward modeling and recursive reward modeling in JAX."""

import setuptools

# Versions that install and run together (checked on CPU, Python 3.11). brax
# 0.14.2's `ppo.train` calls `jax.device_put_replicated`, removed in this
# jax; rrm uses only the brax.training pieces that run (losses, networks,
# acting, running_statistics), and benchmarks/ shims that one call to run
# brax's own trainer as the throughput baseline.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "chex==0.1.92",
    "brax==0.14.2",
    "mujoco==4.0.0",
    "mujoco-mjx==3.17.0",
    "orbax-checkpoint==0.12.8",
    "absl-py==2.5.1",
    "ml_collections==1.1.0",
    "numpy==2.4.6",
    "tensorboardX==2.6.5",
    # The live progress bar of the host loop (rrm.logging.Progress).
    "tqdm==4.70.1",
    "matplotlib==3.11.2",  # the run certificate's figures (rrm/certificate.py)
]

# DM Control tasks (walker_walk, cheetah_run) from MuJoCo Playground:
# pip install -e '.[playground]'. 0.2.0, the newest, installs beside the pins
# above without changing any (checked with `pip install --dry-run` and `pip
# freeze`); its dm_control_suite models ship in the wheel, so no download
# (Playground fetches mujoco_menagerie only for its locomotion/manipulation
# envs, which rrm does not offer). warp-lang, lxml and mediapy are its
# requirements that nothing above brings, pinned at the versions checked
# (tqdm, its fourth, is in the pins above).
PLAYGROUND_REQUIRES = [
    "playground==0.2.0",
    "warp-lang==1.19.0",
    "lxml==6.1.3",
    "mediapy==1.2.7",
]

# Cluster backends of launch/sweep.py: Slurm through submitit.
LAUNCH_REQUIRES = ["submitit==1.5.4", "cloudpickle==3.1.2"]
WANDB_REQUIRES = ["wandb==0.31.0"]
# Evaluation videos as MP4 (H.264) or WebM (VP9): PyAV, FFmpeg's bindings,
# whose wheels carry FFmpeg's libraries (libx264, libvpx). GIFs need nothing
# beyond matplotlib's Pillow. (rrm/video.py)
VIDEO_REQUIRES = ["av==16.1.0"]

# launch/sweep.py --backend=xmanager (XManager's local executor). xmanager
# 0.8.5.post1 (the newest) requires protobuf<7, so installing it moves
# protobuf from 7.36.2 (what the pins above resolve) to 6.33.6 and
# python-dateutil from 4.0.0 to 2.9.0.post0, and it brings about 75 packages
# (Google Cloud and Kubernetes clients, SQLAlchemy, docker, ...). Pinned at
# the versions pip resolves (`pip install --dry-run`); checked: orbax
# checkpoints and the sweep tests pass beside them. Not part of [test].
XMANAGER_REQUIRES = [
    "xmanager==0.8.5.post1",
    "protobuf==6.33.6",
    "python-dateutil==2.9.0.post0",
]

setuptools.setup(
    name="rrm",
    version="0.1.0",
    description="Reward modeling and recursive reward modeling research in JAX",
    packages=setuptools.find_packages(include=["rrm", "rrm.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # Tests include a walker_walk smoke run and the Slurm backend on
        # submitit's local executor, so CI installs both.
        # pytest-xdist: `make test` runs the suite on two workers (the CPU
        # compiles that dominate it are single-threaded). pytest 9.2 made
        # `Item.nodeid` read-only, so xdist 3.8's `--dist loadgroup` no longer
        # keeps an `xdist_group` on one worker (each worker built the shared
        # compiled fixtures: ~10 min of the suite); 9.1.1 still honours it
        # and tests/conftest.py refuses a pytest that does not.
        "test": ["pytest==9.1.1", "pytest-xdist==3.8.0", "execnet==2.1.2",
                 *PLAYGROUND_REQUIRES, *LAUNCH_REQUIRES, *WANDB_REQUIRES,
                 *VIDEO_REQUIRES],
        # log.wandb = "offline" | "online" (rrm.logging).
        "wandb": WANDB_REQUIRES,
        "video": VIDEO_REQUIRES,
        "playground": PLAYGROUND_REQUIRES,
        "launch": LAUNCH_REQUIRES,
        "xmanager": XMANAGER_REQUIRES,
        # GPU: pip install -e '.[cuda]' (see BUILD.md).
        "cuda": ["jax[cuda12]==0.10.2"],
    },
)
