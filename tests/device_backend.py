"""A device-tagging NumPy backend: catches, on the CPU, placement bugs that need two GPUs.

``tagged`` (the namespace object below) behaves like the NumPy module, but every array it
makes is a ``TaggedArray``: a NumPy ndarray subclass that remembers the device it was made
on. ``layers.backend.get_array_module`` finds the namespace through
``TaggedArray.__array_namespace__``, ``layers.backend.device(xp, i)`` enters
``tagged.Device(i)`` and ``layers.backend.to_device(a, xp, i)`` calls ``tagged.to_device``.

Rules enforced (each breach raises ``DeviceMismatch``), stricter than CuPy with peer
access so that a bug shows here even if it would go unnoticed on some machines:
- every operation (ufunc, NumPy function, ``@``, ``a[i] = b``, indexing by arrays) takes
  tagged arrays of one device only, and that device must be the current one;
- plain NumPy arrays (host memory) never mix with tagged arrays: moving host data to a
  device goes through ``tagged.asarray``/``array`` (under the destination device) or
  ``to_device``;
- ``to_device(a, i)`` is the only way an array changes device (it copies), and only
  for contiguous arrays or host data (as ``layers.backend.to_device`` needs for CuPy).
Views (slices, reshapes, transposes) keep their base's device. New arrays from creation
functions (``zeros``, ``empty``, ``asarray`` of host data, ...) get the current device.
"""

import contextlib
import functools
import threading
import types

import numpy


class DeviceMismatch(RuntimeError):
    """Arrays of different devices (or a device and the host) met without a transfer."""


_state = threading.local()


def current_device():
    return getattr(_state, "device", 0)


class TaggedArray(numpy.ndarray):
    """A NumPy array that remembers its device (``device_id``)."""

    def __array_finalize__(self, obj):
        # Views and method results (reshape, copy, astype, argmax, ...) keep the device.
        self.device_id = getattr(obj, "device_id", current_device())

    def __array_namespace__(self, api_version=None):
        return tagged

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__
        args = list(inputs) + list(kwargs.get("out", ()))
        dev = _common_device(where, args + [kwargs.get("where")])
        plain = [_plain(a) for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        if "where" in kwargs:
            kwargs["where"] = _plain(kwargs["where"])
        outs = args[len(inputs) :]
        result = getattr(ufunc, method)(*plain, **kwargs)
        if outs:  # in-place (a += b, out=...): hand back the originals
            return outs[0] if len(outs) == 1 else tuple(outs)
        return _wrap(result, dev)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, args, kwargs)

    def __setitem__(self, key, value):
        _common_device("setitem", [self, value, *_index_arrays(key)], host_ok=False)
        numpy.ndarray.__setitem__(self.view(numpy.ndarray), _plain_index(key), _plain(value))

    def __getitem__(self, key):
        arrays = _index_arrays(key)
        if arrays:
            _common_device("getitem", [self, *arrays])
        return numpy.ndarray.__getitem__(self, _plain_index(key))

    def __repr__(self):
        return f"TaggedArray(device={self.device_id}, {numpy.asarray(self)!r})"


def _index_arrays(key):
    keys = key if isinstance(key, tuple) else (key,)
    return [k for k in keys if isinstance(k, numpy.ndarray)]


def _plain_index(key):
    if isinstance(key, tuple):
        return tuple(_plain(k) for k in key)
    return _plain(key)


def _plain(a):
    if isinstance(a, TaggedArray):
        return a.view(numpy.ndarray)
    if isinstance(a, (list, tuple)):
        return type(a)(_plain(x) for x in a)
    return a


def _flatten(args):
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from _flatten(a)
        elif isinstance(a, dict):
            yield from _flatten(list(a.values()))
        else:
            yield a


def _common_device(where, args, host_ok=False):
    """The one device of the tagged arrays in ``args``; raise on any mix or host array."""
    devices = set()
    host = False
    for a in _flatten(args):
        if isinstance(a, TaggedArray):
            devices.add(a.device_id)
        elif isinstance(a, numpy.ndarray):
            host = True
    if len(devices) > 1:
        raise DeviceMismatch(
            f"{where}: arrays on devices {sorted(devices)} meet without an explicit to_device"
        )
    if not devices:
        return current_device()
    dev = devices.pop()
    if host and not host_ok:
        raise DeviceMismatch(
            f"{where}: a host (plain NumPy) array meets an array on device {dev}; transfer it first"
        )
    if dev != current_device():
        raise DeviceMismatch(
            f"{where}: array on device {dev} used while the current device is {current_device()}"
        )
    return dev


def _wrap(result, dev):
    if isinstance(result, tuple):
        return tuple(_wrap(r, dev) for r in result)
    if isinstance(result, list):
        return [_wrap(r, dev) for r in result]
    if isinstance(result, numpy.ndarray):
        out = result.view(TaggedArray)
        out.device_id = dev
        return out
    return result


def _call(func, args, kwargs):
    name = getattr(func, "__name__", repr(func))
    dev = _common_device(name, [list(args), kwargs])
    result = func(*_plain(list(args)), **{k: _plain(v) for k, v in kwargs.items()})
    return _wrap(result, dev)


class _Namespace(types.SimpleNamespace):
    """A module-like object: NumPy's functions, with device checks and tagged results."""

    def __init__(self, module):
        super().__init__()
        object.__setattr__(self, "_module", module)

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if isinstance(value, types.ModuleType):
            return _Namespace(value)
        if isinstance(value, numpy.ufunc):
            return value  # ufuncs dispatch through TaggedArray.__array_ufunc__ ...
        if callable(value) and not isinstance(value, type):
            return _wrapped(value)
        return value

    def __repr__(self):
        return f"<device-tagged {self._module.__name__}>"


@functools.cache
def _wrapped(func):
    @functools.wraps(func)
    def call(*args, **kwargs):
        return _call(func, args, kwargs)

    return call


class _Tagged(_Namespace):
    ndarray = TaggedArray

    def __init__(self):
        super().__init__(numpy)

    @staticmethod
    @contextlib.contextmanager
    def Device(index):
        """Context: new arrays are made on device ``index`` (as ``cupy.cuda.Device``)."""
        old = current_device()
        _state.device = int(index)
        try:
            yield
        finally:
            _state.device = old

    @staticmethod
    def to_device(a, index):
        """The explicit transfer: a copy of ``a`` (tagged or host) on device ``index``.

        As ``layers.backend.to_device`` does for CuPy, a strided view from another device
        would be made contiguous by a kernel on the destination reading the source's
        memory, so that is refused: make it contiguous on its own device first.
        """
        if isinstance(a, TaggedArray) and a.device_id != int(index) and not a.flags.c_contiguous:
            raise DeviceMismatch(
                f"to_device: a strided view on device {a.device_id} "
                f"copied to device {index}; make it contiguous first"
            )
        out = numpy.array(_plain(a), copy=True).view(TaggedArray)
        out.device_id = int(index)
        return out

    @staticmethod
    def asnumpy(a):
        return numpy.array(_plain(a), copy=True)


tagged = _Tagged()
