"""AlexNet's layers as pure forward/backward pairs on any array module (NumPy or CuPy).

Each module holds one layer: ``forward(...) -> (y, cache)`` and ``backward(dy, cache)``.
``layers.backend`` is the array-module abstraction and the only importer of CuPy;
``layers.blocking`` the cache-blocking policy; ``layers.workspace`` where the layers' large
arrays come from (``ws=``: made afresh, or memory a network keeps from pass to pass);
``layers.plain`` the plain engine's form of every layer (the obvious form of those whose
fast paths are clever, against which those are tested; ``layers.reference`` keeps its
older signatures).
"""

from __future__ import annotations
