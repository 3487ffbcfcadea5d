"""AlexNet's layers as pure forward/backward pairs on any array module (NumPy or CuPy).

Each module holds one layer: ``forward(...) -> (y, cache)`` and ``backward(dy, cache)``.
``layers.backend`` is the array-module abstraction and the only importer of CuPy;
``layers.blocking`` the cache-blocking policy; ``layers.workspace`` where the layers' large
arrays come from (``ws=``: made afresh, or memory a network keeps from pass to pass);
``layers.reference`` the plain form of the layers whose fast paths are clever, against
which those are tested.
"""
