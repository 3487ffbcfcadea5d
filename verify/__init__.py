"""Our numbers against PyTorch's, layer by layer and for the whole network.

    python -m verify [--dtype float64|float32] [--seed N] [--only layers,network,sgd,conventions]
                     [--size small|paper|both] [--json PATH|-]

Modules: ``compare`` (error measure, tolerances, table and JSON), ``twins`` (PyTorch twin
of each layer), ``twin_network`` (the whole network in PyTorch), ``layer_cases``,
``network``, ``sgd`` and ``conventions`` (the comparisons, each a list of report rows).
This package and the tests are the only places that import torch.
"""
