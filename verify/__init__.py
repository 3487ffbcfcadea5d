"""Our numbers against PyTorch's (and JAX's, and the ONNX export's), layer by layer and for
the whole network, and our fast paths against their plain form (``layers.reference``).

    python -m refnet.verify [--dtype float64|float32] [--seed N]
                     [--against torch,onnxruntime,jax]
                     [--only layers,network,sgd,conventions,reference]
                     [--size small|paper|both] [--json PATH|-]

Modules: ``compare`` (error measure, tolerances, table and JSON), ``twins`` (PyTorch twin
of each layer), ``twin_network`` (the whole network in PyTorch), ``layer_cases``,
``network``, ``sgd``, ``conventions`` and ``reference_cases`` (the comparisons, each a
list of report rows); ``jax_twins`` and ``jax_network`` (the same in JAX);
``frameworks`` (the registry behind ``--against``: ``against_torch``, ``against_jax``,
``against_onnxruntime``) and ``framework_table`` (one table across frameworks). This
package and the tests are the only places that import torch or jax.
"""
