"""A fake of the TensorRT 10 *builder* Python API, enough to run engine.build.build_engine without TensorRT or a GPU.

Names and signatures follow the real ``tensorrt`` module: ``Builder(logger)``, ``builder.create_network(flags)``,
``OnnxParser(network, logger).parse_from_file(path)`` / ``num_errors`` / ``get_error(i)`` (``desc()``, ``node()``,
``node_name()``, ``node_operator()``...), ``builder.create_builder_config()``, ``config.set_memory_pool_limit(pool,
pool_size)``, ``config.set_flag(flag)``, ``builder.create_optimization_profile()``, ``profile.set_shape(input, min,
opt, max)``, ``config.add_optimization_profile(profile) -> int``, ``config.set_calibration_profile(profile) -> bool``,
the ``config.int8_calibrator`` property, ``config.create_timing_cache(blob)``, ``config.set_timing_cache(cache,
ignore_mismatch) -> bool``, ``config.get_timing_cache().serialize()``, ``builder.build_serialized_network(network,
config) -> IHostMemory | None`` and ``builder.platform_has_fast_fp16 / _int8``.

Every call is appended to ``state.log`` as ``(name, args)``. The fake build runs INT8 calibration the way TensorRT
does: it asks the calibrator for its cache, else for batches, and reads exactly the calibration profile's OPT shape
from the "device" pointer it is given (an AssertionError if that buffer is smaller: real TensorRT would read past
it). A timing cache is keyed by TensorRT version and compute capability; each build adds one entry.
"""

from __future__ import annotations

import enum
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fake_tensorrt import VERSION, FakeCuda

TIMING_MAGIC = b"FAKE-TIMING-CACHE/"
CALIBRATION_TABLE = b"FAKE-CALIBRATION-TABLE"


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1


class BuilderFlag(enum.Enum):
    FP16 = 0
    BF16 = 1
    INT8 = 2


class ErrorCode(enum.Enum):
    SUCCESS = 0
    INVALID_GRAPH = 4
    UNSUPPORTED_NODE = 8


class FakeHostMemory(bytearray):
    """``tensorrt.IHostMemory``: a buffer with ``nbytes``."""

    @property
    def nbytes(self) -> int:
        return len(self)


@dataclass
class BuildState:
    """Options of the fake and what the code under test did with it."""

    cuda: FakeCuda
    version: str = VERSION
    fast_fp16: bool = True
    fast_int8: bool = True
    has_int8_calibrator: bool = True  # False: a TensorRT after the removal of implicit calibration
    fail_build: bool = False
    refuse_timing_cache: bool = False  # set_timing_cache returns False for every cache
    timing_serialize_error: bool = False
    parse_errors: list[tuple[str, int, str, str]] = field(default_factory=list)  # (desc, node, name, op)
    log: list[tuple[str, tuple]] = field(default_factory=list)
    calib_batches: list[np.ndarray] = field(default_factory=list)
    calib_cache_read: bytes | None = None
    built: list[dict] = field(default_factory=list)

    def calls(self, name: str) -> list[tuple]:
        """The arguments of every recorded call of ``name``."""
        return [args for n, args in self.log if n == name]

    @property
    def timing_header(self) -> bytes:
        return TIMING_MAGIC + f"{self.version}/{self.cuda.cc};".encode()


class FakeTimingCache:
    def __init__(self, state: BuildState, header: bytes, entries: int) -> None:
        self.state, self.header, self.entries = state, header, entries

    def serialize(self) -> FakeHostMemory:
        self.state.log.append(("timing_cache.serialize", ()))
        if self.state.timing_serialize_error:
            raise RuntimeError("ITimingCache::serialize failed")
        return FakeHostMemory(self.header + str(self.entries).encode())

    def combine(self, input_cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        self.entries += input_cache.entries
        return True

    def reset(self) -> bool:
        self.entries = 0
        return True


class FakeParserError:
    def __init__(self, desc: str, node: int = -1, name: str = "", op: str = "") -> None:
        self._desc, self._node, self._name, self._op = desc, node, name, op

    def code(self) -> ErrorCode:
        return ErrorCode.UNSUPPORTED_NODE if self._node >= 0 else ErrorCode.INVALID_GRAPH

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op

    def file(self) -> str:
        return "ModelImporter.cpp"

    def line(self) -> int:
        return 1

    def func(self) -> str:
        return "parseNode"

    def __str__(self) -> str:
        return f"In node {self._node} with name: {self._name} and operator: {self._op}: {self.code()}: {self._desc}"


@dataclass
class FakeTensor:
    name: str
    shape: tuple[int, ...]


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags, self.inputs, self.outputs = flags, [], []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> FakeTensor:
        return self.inputs[index]

    def get_output(self, index: int) -> FakeTensor:
        return self.outputs[index]


class FakeProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # TensorRT's parameter names
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    def get_shape(self, input: str) -> list[tuple[int, ...]]:
        return list(self.shapes[input])

    def __bool__(self) -> bool:
        return bool(self.shapes) and all(all(a <= b <= c for a, b, c in zip(*s)) for s in self.shapes.values())


def make_trt(state: BuildState) -> types.SimpleNamespace:
    """A fake ``tensorrt`` module for building (plus Logger / init_libnvinfer_plugins)."""
    log = state.log

    class Logger:
        VERBOSE, INFO, WARNING, ERROR = 4, 3, 2, 1

        def __init__(self, min_severity: int = 2) -> None:
            self.min_severity = min_severity

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    class OnnxParser:
        def __init__(self, network: FakeNetwork, logger: Logger) -> None:
            self.network, self.errors = network, []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> FakeParserError:
            return self.errors[index]

        def parse_from_file(self, model: str) -> bool:
            import onnx

            from engine.plugins import _LOADED, PLUGIN_OPS

            log.append(("parse_from_file", (model,)))
            proto = onnx.load(model, load_external_data=False)
            self.errors = [FakeParserError(*e) for e in state.parse_errors]
            self.errors += [FakeParserError(f"No importer registered for op: {n.op_type}", i, n.name, n.op_type)
                            for i, n in enumerate(proto.graph.node) if n.op_type in PLUGIN_OPS and not _LOADED]
            if self.errors:
                return False
            inits = {i.name for i in proto.graph.initializer}

            def dims(v: Any) -> tuple[int, ...]:
                return tuple(d.dim_value or -1 for d in v.type.tensor_type.shape.dim)

            self.network.inputs = [FakeTensor(v.name, dims(v)) for v in proto.graph.input if v.name not in inits]
            self.network.outputs = [FakeTensor(v.name, dims(v)) for v in proto.graph.output]
            return True

    def _config_class() -> type:
        class Config:
            def __init__(self) -> None:
                self.pools, self.flags, self.profiles = {}, set(), []
                self.calibration_profile: FakeProfile | None = None
                self.calibrator: Any = None
                self.timing_cache: FakeTimingCache | None = None

            def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
                log.append(("set_memory_pool_limit", (pool, pool_size)))
                self.pools[pool] = pool_size

            def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
                return self.pools.get(pool, 0)

            def set_flag(self, flag: BuilderFlag) -> None:
                log.append(("set_flag", (flag,)))
                self.flags.add(flag)

            def get_flag(self, flag: BuilderFlag) -> bool:
                return flag in self.flags

            def add_optimization_profile(self, profile: FakeProfile) -> int:
                log.append(("add_optimization_profile", (dict(profile.shapes),)))
                if not profile:
                    return -1
                self.profiles.append(profile)
                return len(self.profiles) - 1

            @property
            def num_optimization_profiles(self) -> int:
                return len(self.profiles)

            def set_calibration_profile(self, profile: FakeProfile) -> bool:
                log.append(("set_calibration_profile", (dict(profile.shapes),)))
                self.calibration_profile = profile
                return bool(profile)

            def get_calibration_profile(self) -> FakeProfile | None:
                return self.calibration_profile

            def create_timing_cache(self, serialized_timing_cache: bytes) -> FakeTimingCache | None:
                blob = bytes(serialized_timing_cache)
                log.append(("create_timing_cache", (blob,)))
                if not blob:
                    return FakeTimingCache(state, state.timing_header, 0)
                if not blob.startswith(TIMING_MAGIC) or b";" not in blob:
                    return None  # TensorRT logs an error and returns no cache for a damaged blob
                header, entries = blob.split(b";", 1)
                return FakeTimingCache(state, header + b";", int(entries or 0))

            def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
                log.append(("set_timing_cache", (cache.header, cache.entries, ignore_mismatch)))
                if state.refuse_timing_cache or (cache.header != state.timing_header and not ignore_mismatch):
                    return False
                self.timing_cache = cache
                return True

            def get_timing_cache(self) -> FakeTimingCache | None:
                return self.timing_cache

        if state.has_int8_calibrator:
            def _get(self: Any) -> Any:
                return self.calibrator

            def _set(self: Any, calibrator: Any) -> None:
                log.append(("int8_calibrator", (calibrator,)))
                self.calibrator = calibrator

            Config.int8_calibrator = property(_get, _set)
        return Config

    Config = _config_class()

    class Builder:
        def __init__(self, logger: Logger) -> None:
            log.append(("Builder", (logger.min_severity,)))
            self.platform_has_fast_fp16, self.platform_has_fast_int8 = state.fast_fp16, state.fast_int8

        def create_network(self, flags: int = 0) -> FakeNetwork:
            log.append(("create_network", (flags,)))
            return FakeNetwork(flags)

        def create_builder_config(self) -> Any:
            return Config()

        def create_optimization_profile(self) -> FakeProfile:
            profile = FakeProfile()
            set_shape = profile.set_shape

            def recorded(input: str, min: Any, opt: Any, max: Any) -> None:
                log.append(("set_shape", (input, tuple(min), tuple(opt), tuple(max))))
                set_shape(input, min, opt, max)

            profile.set_shape = recorded  # type: ignore[method-assign]
            return profile

        def build_serialized_network(self, network: FakeNetwork, config: Any) -> FakeHostMemory | None:
            log.append(("build_serialized_network", (sorted(f.name for f in config.flags),)))
            if BuilderFlag.INT8 in config.flags and config.calibrator is not None:
                if not _calibrate(state, network, config):
                    return None
            if state.fail_build:
                return None
            if config.timing_cache is not None:
                config.timing_cache.entries += 1
            doc = {"flags": sorted(f.name for f in config.flags), "profiles": len(config.profiles)}
            state.built.append(doc)
            return FakeHostMemory(b"FAKEPLAN" + json.dumps(doc).encode())

    return types.SimpleNamespace(
        __version__=state.version, Logger=Logger, init_libnvinfer_plugins=lambda logger, namespace: True,
        Builder=Builder, OnnxParser=OnnxParser, MemoryPoolType=MemoryPoolType, BuilderFlag=BuilderFlag,
        ErrorCode=ErrorCode, **({"IInt8EntropyCalibrator2": IInt8EntropyCalibrator2}
                                if state.has_int8_calibrator else {}))


def _calibrate(state: BuildState, network: FakeNetwork, config: Any) -> bool:
    """What TensorRT does with a calibrator: use its cache, else read OPT-shaped batches until it returns None."""
    cal = config.calibrator
    profile = config.calibration_profile or config.profiles[0]
    name = network.get_input(0).name
    opt = profile.shapes[name][1]
    need = int(np.prod(opt)) * 4
    cache = cal.read_calibration_cache()
    if cache:
        state.calib_cache_read = bytes(cache)
        return True
    while True:
        ptrs = cal.get_batch([name])
        if not ptrs:
            break
        buf = state.cuda.mem[ptrs[0]]
        if len(buf) < need:
            raise AssertionError(f"TensorRT would read {need} bytes from a {len(buf)}-byte calibration buffer")
        state.calib_batches.append(np.frombuffer(buf, np.float32, count=int(np.prod(opt))).reshape(opt).copy())
    if not state.calib_batches:
        return False  # TensorRT fails without calibration data
    cal.write_calibration_cache(memoryview(CALIBRATION_TABLE))
    return True


def install_builder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **options: Any) -> BuildState:
    """Patch engine.build's TensorRT and engine.cudart's runtime with fakes; no plugin library (unless the test
    sets ``SEGRT_TRT_PLUGINS`` after this)."""
    import engine.backends.tensorrt  # noqa: F401 - binds the real import_tensorrt before engine.build's is patched
    import engine.build as build
    import engine.cudart as cudart

    state = BuildState(cuda=FakeCuda(options.pop("cc", "9.0")), **options)
    monkeypatch.setattr(build, "import_tensorrt", lambda: make_trt(state))
    monkeypatch.setattr(cudart, "runtime", lambda: state.cuda)
    monkeypatch.setenv("SEGRT_TRT_PLUGINS", str(tmp_path / "no_plugins.so"))
    return state
