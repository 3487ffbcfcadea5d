"""Our numbers against PyTorch's, layer by layer and for the whole network, and our fast
paths against their plain form (``layers.reference``).

    python -m verify [--dtype float64|float32] [--seed N]
                     [--only layers,network,sgd,conventions,reference]
                     [--size small|paper|both] [--json PATH|-]

Modules: ``compare`` (error measure, tolerances, table and JSON), ``twins`` (PyTorch twin
of each layer), ``twin_network`` (the whole network in PyTorch), ``layer_cases``,
``network``, ``sgd``, ``conventions`` and ``reference_cases`` (the comparisons, each a
list of report rows). This package and the tests are the only places that import torch.
"""
