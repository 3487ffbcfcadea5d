"""``python -m refnet --version`` prints refnet's version; ``python -m refnet`` lists the
commands."""

from __future__ import annotations

import argparse

import refnet

COMMANDS = {
    "refnet.train": "train the network (the demo data without --data)",
    "refnet.evaluate": "validation error of a checkpoint, centre or 10 crops",
    "refnet.predict": "top classes of image files",
    "refnet.neighbors": "the paper's Figure 4: nearest training images in feature space",
    "refnet.summary": "every layer's output shape, parameters and FLOPs",
    "refnet.export": "the network as ONNX",
    "refnet.ablate": "the paper's ablations, paired over seeds",
    "refnet.data.build": "an image tree into the HDF5 store",
    "refnet.verify": "every layer and the network against other frameworks",
    "refnet.bench": "the training step and layers timed against PyTorch",
}


def main(argv: list[str] | None = None) -> int:
    epilog = "commands (python -m NAME --help):\n" + "\n".join(
        f"  {name:20} {what}" for name, what in COMMANDS.items()
    )
    p = argparse.ArgumentParser(
        prog="python -m refnet",
        description=(refnet.__doc__ or "").split("\n")[0],  # None under python -OO
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"refnet {refnet.__version__}")
    p.parse_args(argv)
    p.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
