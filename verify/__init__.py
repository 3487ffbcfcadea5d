"""Our numbers against PyTorch's, layer by layer and for the whole network."""
