"""refnet: AlexNet's two-column network, its training, evaluation and benchmarks."""
