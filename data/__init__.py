"""The paper's data pipeline: images to HDF5, the loader, augmentation, the demo set."""
