"""The benchmark: refnet's training step, forward pass and layers timed against PyTorch.

    python -m refnet.bench [--arch alexnet] [--batch 128] [--device cpu|gpu] [--json PATH] ...

It stands on the library (``refnet``, ``layers``) and on ``verify``'s PyTorch twins;
nothing in ``layers/``, ``data/`` or ``refnet/`` imports it.
"""
