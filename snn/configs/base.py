"""Fields shared by every snn config (see `snn.train` for their meaning)."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.area = "snn"
    config.seed = 0
    config.num_devices = 0  # 0 = every device; the batch axis is split over them
    config.dataset = "mnist"
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.num_classes = 10
    config.model = "mlp"  # mlp | conv
    config.hidden = (800,)  # mlp hidden sizes
    config.channels = (12, 64)  # conv channels (5x5 kernels, 2x2 max-pool)
    config.spiking = True  # False: the same layers as an ANN with ReLU
    config.encoder = "rate"  # rate (p = pixel/256) | latency
    config.time_steps = 25
    config.neuron = "lif"  # lif | synaptic | alif
    config.beta = 0.9
    config.threshold = 1.0
    config.reset = "subtract"  # subtract | zero
    config.learn_beta = False
    config.learn_threshold = False
    config.surrogate = "fast_sigmoid"
    config.surrogate_scale = 25.0
    config.loss = (
        "count_ce"  # count_ce | max_membrane_ce | final_membrane_ce | mse_count
    )
    config.remat = False  # jax.checkpoint each neuron step
    config.truncate = 0  # truncated BPTT window (0 = full BPTT)
    config.schedule = "layer"  # layer: each layer over all T | step: one time scan
    config.chunk = 32  # layer schedule: conv frames per unrolled call (0 = all)
    config.conv = "auto"  # lax | matmul (snn.conv) | auto: matmul on CPU
    config.learning_rate = 1e-3
    config.cosine_decay = False  # cosine decay of the learning rate to 0
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.num_epochs = 1
    config.train_examples = 0  # 0 = all
    config.test_examples = 0  # 0 = all
    config.log_every = 100
    config.eval_every = 0
    config.checkpoint_every = 500
    config.figures = False  # raster, membrane trace, accuracy-vs-operations sweep
    config.sweep_examples = 2000  # test examples per point of the sweep
    config.sweep_time_steps = (1, 2, 4, 8, 16, 25)
    config.sweep_thresholds = (0.5, 1.0, 2.0)  # multiples of config.threshold
    # train the ANN twin (same layers, ReLU) after the SNN, in workdir/ann
    config.ann_twin = False
    # or give its test accuracy (ann_mnist), drawn on the sweep
    config.ann_accuracy = ml_collections.config_dict.placeholder(float)
    return config


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Seconds on CPU: tiny data and model, every code path once."""
    config.num_devices = 1  # one device: a 4x smaller SPMD compile in tests
    config.train_examples = 256
    config.test_examples = 200
    config.eval_batch_size = 100
    config.batch_size = 32
    config.num_epochs = 1
    config.learning_rate = 1e-2  # above chance in 8 steps (the test checks it)
    config.time_steps = 5
    config.log_every = 4
    config.eval_every = 8
    config.checkpoint_every = 8
    config.sweep_examples = 100
    config.sweep_time_steps = (5,)
    config.sweep_thresholds = (1.0,)
    return config
