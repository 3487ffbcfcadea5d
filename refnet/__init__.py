"""refnet: AlexNet's two-column network, its options, training and evaluation.

    from refnet import AlexNet, NetOptions, build_network, SGD, ReduceOnPlateau, StepSchedule
"""
from refnet.arch import ARCHS, ArchSpec, ConvSpec, param_shapes
from refnet.network import AlexNet, build_network
from refnet.options import NetOptions
from refnet.schedule import ReduceOnPlateau, StepSchedule
from refnet.sgd import SGD

__all__ = ["AlexNet", "NetOptions", "build_network", "SGD", "ReduceOnPlateau",
           "StepSchedule", "ARCHS", "ArchSpec", "ConvSpec", "param_shapes"]
