"""refnet: AlexNet's two-column network, its training, evaluation and benchmarks.

    from refnet import AlexNet, SGD, ReduceOnPlateau, StepSchedule, ARCHS
"""
from refnet.arch import ARCHS, ArchSpec, ConvSpec, param_shapes
from refnet.network import AlexNet
from refnet.schedule import ReduceOnPlateau, StepSchedule
from refnet.sgd import SGD

__all__ = ["AlexNet", "SGD", "ReduceOnPlateau", "StepSchedule", "ARCHS", "ArchSpec",
           "ConvSpec", "param_shapes"]
