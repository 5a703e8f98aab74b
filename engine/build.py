"""ONNX -> TensorRT engine builder (``segrt build``), against the public TensorRT 10 Python API.

``build_engine("m.onnx", "m.plan", fp16=True)`` parses the model (our plugin library loaded first), builds one
optimization profile for the image input, and writes ``m.plan`` atomically plus the sidecar ``m.plan.json``: the
TensorRT version, GPU name and compute capability, precision, shape profile, the model's ``segrt.*`` metadata copied
from the ONNX ``metadata_props``, the plan's SHA-256 and the build time. ``engine.backends.tensorrt`` reads it back.

Precision: ``--fp16``; ``--int8 --calib DIR`` (entropy calibration on images of DIR pre-processed like
``engine.Predictor``, batches of exactly the profile's OPT shape, at which TensorRT calibrates); both together is
allowed and means INT8 where calibrated and faster, FP16 elsewhere (the usual TensorRT practice; INT8 alone falls
back to FP32). Implicit INT8 calibration is deprecated since TensorRT 10.1 (explicit Q/DQ quantization supersedes
it) but still works in TensorRT 10; a release without it is a clear error.

Timing cache: ``<plan>.timing`` beside the output by default (read when present, rewritten after the build, so
rebuilds skip most tactic timing); ``--timing-cache FILE`` names another (one file may serve several models),
``--no-timing-cache`` turns it off. A cache from another TensorRT / GPU is replaced, with a warning; the plan is
written first, so failing to save the cache never loses a build. Plugins: a graph with our plugin ops needs the
plugin library (an error names the library and the ops); other models only try to load it (a broken one warns),
as ``engine.backends.tensorrt`` does. Everything that needs TensorRT imports it lazily.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.calibration import CalibrationData, configure_int8
from engine.errors import MissingDependencyError
from engine.fileio import write_atomic
from engine.metadata import PREFIX, ModelMeta
from engine.plan_sidecar import sha256_file, write_sidecar

TRT_PIP_PACKAGE = "tensorrt"
DEFAULT_SHAPES = "1x3x256x512,1x3x512x1024,1x3x1024x2048"
PLAN_SUFFIXES = (".plan", ".engine")
TIMING_CACHE_SUFFIX = ".timing"

Shape = tuple[int, int, int, int]


def import_tensorrt() -> ModuleType:
    """``import tensorrt``, or MissingDependencyError "TensorRT is not installed" naming the pip package."""
    try:
        import tensorrt
    except ImportError as e:
        raise MissingDependencyError(f"TensorRT is not installed ({e}). Install NVIDIA's Python package on a "
                                     f"machine with an NVIDIA GPU: `pip install {TRT_PIP_PACKAGE}` "
                                     "(or `pip install segrt[trt]`)") from None
    return tensorrt


@dataclass(frozen=True)
class ShapeProfile:
    """min / opt / max ``[B, 3, H, W]`` of the image input (one TensorRT optimization profile)."""

    min: Shape
    opt: Shape
    max: Shape

    def as_dict(self) -> dict[str, list[int]]:
        """JSON form ``{"min": [...], "opt": [...], "max": [...]}``."""
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShapeProfile:
        """Inverse of :meth:`as_dict` (validated)."""
        try:
            return make_profile(*(tuple(int(v) for v in d[k]) for k in ("min", "opt", "max")))
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad shape profile {d!r}: {e}") from None

    def contains(self, shape: tuple[int, ...]) -> bool:
        """True when ``shape`` lies within [min, max] in every dimension."""
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))


def parse_shape(text: str) -> Shape:
    """``"1x3x512x1024"`` -> ``(1, 3, 512, 1024)``; ValueError naming the text when malformed."""
    if not re.fullmatch(r"\s*\d+(\s*x\s*\d+){3}\s*", text or ""):
        raise ValueError(f"malformed shape {text!r}: expected BxCxHxW, e.g. 1x3x512x1024")
    shape = tuple(int(v) for v in text.lower().split("x"))
    if min(shape) <= 0:
        raise ValueError(f"malformed shape {text!r}: all sizes must be positive")
    return shape  # type: ignore[return-value]


def make_profile(mn: tuple[int, ...], opt: tuple[int, ...], mx: tuple[int, ...]) -> ShapeProfile:
    """Validate and build a profile: 4-D, 3 channels, positive, ``min <= opt <= max`` in every dimension."""
    for name, s in (("min", mn), ("opt", opt), ("max", mx)):
        if len(s) != 4 or min(s) <= 0:
            raise ValueError(f"--shapes: {name} shape {s} must be four positive sizes BxCxHxW")
        if s[1] != 3:
            raise ValueError(f"--shapes: {name} shape {s} must have 3 channels (RGB images)")
    for i, dim in enumerate("BCHW"):
        if not mn[i] <= opt[i] <= mx[i]:
            raise ValueError(f"--shapes: need min <= opt <= max, but {dim} is {mn[i]}, {opt[i]}, {mx[i]}")
    return ShapeProfile(tuple(mn), tuple(opt), tuple(mx))  # type: ignore[arg-type]


def parse_shapes(text: str) -> ShapeProfile:
    """``"MIN,OPT,MAX"`` (each BxCxHxW) or one shape for a static profile; ValueError naming ``--shapes``."""
    parts = [p for p in (text or "").split(",")]
    if len(parts) not in (1, 3):
        raise ValueError(f"malformed --shapes {text!r}: expected MIN,OPT,MAX (or one shape), "
                         f"e.g. {DEFAULT_SHAPES}")
    try:
        shapes = [parse_shape(p) for p in parts]
    except ValueError as e:
        raise ValueError(f"malformed --shapes {text!r}: {e}") from None
    return make_profile(*(shapes * 3 if len(shapes) == 1 else shapes))


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of an ONNX graph, including those of subgraphs (If / Loop / Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)


def onnx_info(onnx_path: str | Path) -> tuple[str, list[int | None], dict[str, str], list[str]]:
    """(input name, its dims (None = dynamic), ``segrt.*`` metadata_props, the plugin op types the graph uses)."""
    import onnx

    from engine.plugins import plugin_ops

    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have several types
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one image input, got {[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    props = {p.key: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}
    nodes = [*_nodes(proto.graph), *(n for f in proto.functions for n in f.node)]
    return inputs[0].name, dims, props, plugin_ops((n.domain, n.op_type) for n in nodes)


def default_profile(dims: list[int | None], meta: ModelMeta) -> ShapeProfile:
    """The profile when ``--shapes`` is not given: the ONNX static dims, else the model's input_size, else default."""
    if len(dims) == 4 and all(d for d in dims):
        return make_profile(*(tuple(dims),) * 3)  # type: ignore[arg-type]
    if meta.input_size:
        h, w = meta.input_size
        return make_profile((1, 3, h, w), (1, 3, h, w), (1, 3, h, w))
    return parse_shapes(DEFAULT_SHAPES)


def check_profile_against_model(profile: ShapeProfile, dims: list[int | None], source: str,
                                size_divisor: int = 1) -> None:
    """ValueError when the model fixes a dimension the profile does not match; a warning when the OPT H x W is not
    a multiple of the model's ``size_divisor`` (the Predictor never runs such a size, yet TensorRT tunes and
    calibrates for it)."""
    if len(dims) != 4:
        raise ValueError(f"{source}: image input must be 4-D [B, 3, H, W], got {len(dims)} dims")
    for i, d in enumerate(dims):
        if d and not profile.min[i] == profile.max[i] == d:
            raise ValueError(f"--shapes: {source} fixes dimension {'BCHW'[i]} to {d}, but the profile spans "
                             f"{profile.min[i]}..{profile.max[i]}")
    h, w = profile.opt[2:]
    if size_divisor > 1 and (h % size_divisor or w % size_divisor):
        warnings.warn(f"--shapes: OPT {h}x{w} is not a multiple of the size_divisor {size_divisor} of {source}; "
                      f"engine.Predictor only runs multiples of it, so TensorRT would tune (and calibrate) for a "
                      "size it never sees", stacklevel=3)


def validate_options(fp16: bool, int8: bool, calib_dir: str | Path | None, workspace_gb: float) -> str:
    """Check the precision / calibration / workspace options; return the precision label."""
    if int8 and calib_dir is None:
        raise ValueError("--int8 needs --calib DIR: a folder of representative images for INT8 calibration")
    if calib_dir is not None and not int8:
        raise ValueError("--calib is only used with --int8")
    if not workspace_gb > 0:
        raise ValueError(f"--workspace must be a positive number of GiB, got {workspace_gb}")
    return "int8+fp16" if int8 and fp16 else "int8" if int8 else "fp16" if fp16 else "fp32"


def _device_info() -> dict[str, str | None]:
    try:
        from engine.cudart import runtime

        rt = runtime()
        return {"gpu": rt.device_name(), "compute_capability": rt.compute_capability()}
    except (RuntimeError, OSError, AttributeError):
        return {"gpu": None, "compute_capability": None}


def default_timing_cache(plan_path: str | Path) -> Path:
    """Where a build keeps its timing cache unless told otherwise: ``model.plan`` -> ``model.plan.timing``."""
    return Path(str(plan_path) + TIMING_CACHE_SUFFIX)


def parser_errors(parser: Any) -> str:
    """The ONNX parser's errors as one line: ``node 3 'name' (OpType): description; ...``."""
    msgs = []
    for err in (parser.get_error(i) for i in range(parser.num_errors)):
        node, name, op = (getattr(err, a)() if hasattr(err, a) else d
                          for a, d in (("node", -1), ("node_name", ""), ("node_operator", "")))
        where = f"node {node}" + (f" {name!r}" if name else "") + (f" ({op})" if op else "") + ": " if node >= 0 else ""
        msgs.append(where + str(err.desc() if hasattr(err, "desc") else err))
    return "; ".join(msgs) or "the parser gave no error message"


def _attach_timing_cache(trt: Any, config: Any, path: Path) -> bool:
    """Give ``config`` the timing cache at ``path`` (an empty one when absent). A cache TensorRT rejects (another
    TensorRT version or GPU, or damaged) is replaced by an empty one, with a warning. True: save it after the build."""
    blob = b""
    if path.is_file():
        try:
            blob = path.read_bytes()
        except OSError as e:
            warnings.warn(f"timing cache {path} cannot be read ({e}); starting an empty one", stacklevel=3)
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return True
    if blob:
        warnings.warn(f"timing cache {path} was not accepted by TensorRT {trt.__version__} on this GPU (made by "
                      "another TensorRT version or GPU, or damaged): not used; this build's timings replace it",
                      stacklevel=3)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return True
    warnings.warn(f"TensorRT refused an empty timing cache: building without one ({path} is not written)", stacklevel=3)
    return False


def _save_timing_cache(config: Any, path: Path) -> None:
    """Write the config's timing cache atomically; a failure only warns (the plan is already written)."""
    try:
        cache = config.get_timing_cache()
        if cache is None:
            raise RuntimeError("the builder config has no timing cache")
        write_atomic(path, bytes(cache.serialize()))
    except (OSError, RuntimeError, TypeError) as e:
        warnings.warn(f"the plan is written, but its timing cache {path} could not be saved: {e}", stacklevel=3)


def _check_fast(builder: Any, flag: str, label: str) -> None:
    """Warn when the builder says this GPU lacks fast ``label`` math (``platform_has_fast_*``, deprecated in 10.5)."""
    if getattr(builder, flag, True) is False:
        warnings.warn(f"this GPU has no fast {label} support: TensorRT will mostly pick FP32 kernels", stacklevel=3)


def build_engine(onnx_path: str | Path, out_path: str | Path, fp16: bool = False, int8: bool = False,
                 calib_dir: str | Path | None = None, shapes: ShapeProfile | str | None = None,
                 workspace_gb: float = 4.0, timing_cache: str | Path | bool | None = True,
                 calib_cache: str | Path | None = None, calib_images: int | None = 512,
                 verbose: bool = False) -> Path:
    """Build ``onnx_path`` into a TensorRT plan at ``out_path`` (+ ``<plan>.json``); returns the plan path.

    ``timing_cache``: True (default) uses :func:`default_timing_cache`, a path uses that file, None / False none.
    ``calib_cache`` (INT8) defaults to ``<plan>.calib``.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    precision = validate_options(fp16, int8, calib_dir, workspace_gb)
    if out_path.suffix.lower() not in PLAN_SUFFIXES:
        raise ValueError(f"output {out_path} must end in .plan or .engine (that is how engine.Predictor opens it)")
    input_name, dims, props, ops_needed = onnx_info(onnx_path)
    meta = ModelMeta.from_props(props, source=str(onnx_path))
    profile = parse_shapes(shapes) if isinstance(shapes, str) else shapes or default_profile(dims, meta)
    check_profile_against_model(profile, dims, str(onnx_path), int(getattr(meta, "size_divisor", 1) or 1))
    calib = None
    if int8:  # batches of exactly the calibration profile's OPT shape: what TensorRT reads from the buffer
        cache = Path(calib_cache) if calib_cache else Path(str(out_path) + ".calib")
        calib = CalibrationData(calib_dir, meta, profile.opt, cache_path=cache, max_images=calib_images)
        calib.cache_key = calib.fingerprint(sha256_file(onnx_path))
    cache_file = default_timing_cache(out_path) if timing_cache is True else \
        Path(timing_cache) if timing_cache else None

    trt = import_tensorrt()
    from engine.plugins import ensure_plugins

    ensure_plugins(ops_needed, f"{onnx_path} uses the segrt TensorRT plugin op(s) {', '.join(ops_needed)}",
                   str(onnx_path))
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise ValueError(f"{onnx_path}: TensorRT cannot parse the model: {parser_errors(parser)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        _check_fast(builder, "platform_has_fast_fp16", "FP16")
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(input_name, profile.min, profile.opt, profile.max)
    if config.add_optimization_profile(opt_profile) < 0:
        raise ValueError(f"--shapes: TensorRT rejected the profile min {profile.min} opt {profile.opt} max "
                         f"{profile.max} for input {input_name!r} of {onnx_path}")
    calibrator = None
    if calib is not None:
        _check_fast(builder, "platform_has_fast_int8", "INT8")
        calibrator = configure_int8(trt, config, calib, input_name, opt_profile)
    save_cache = cache_file is not None and _attach_timing_cache(trt, config, cache_file)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    err = getattr(calibrator, "error", None)
    if err is not None:
        cls = type(err) if isinstance(err, (ValueError, OSError)) else RuntimeError
        raise cls(f"INT8 calibration on {calib_dir} failed: {err}") from err
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (precision {precision}, profile "
                           f"min {profile.min} opt {profile.opt} max {profile.max}, workspace {workspace_gb} GiB); "
                           "see the TensorRT log above, rerun with --verbose for details")
    write_atomic(out_path, bytes(serialized))
    del serialized
    info: dict[str, Any] = {
        "tensorrt": trt.__version__, **_device_info(), "precision": precision, "profile": profile.as_dict(),
        "input": input_name, "output": network.get_output(0).name, "metadata": props,
        "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path), "plugins": ops_needed,
        "build_seconds": round(seconds, 3), "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }
    if calib is not None:
        info["calibration"] = {"images": len(calib.files), "shape": list(calib.shape),
                               "batches": getattr(calibrator, "batches_fed", None)}
    write_sidecar(out_path, info)
    cache_err = getattr(calibrator, "cache_error", None)
    if cache_err is not None:
        warnings.warn(f"the plan is built, but its INT8 calibration table could not be saved ({cache_err}); the "
                      "next INT8 build will calibrate again", stacklevel=2)
    if save_cache:
        _save_timing_cache(config, cache_file)  # type: ignore[arg-type]
    del calibrator
    return out_path


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``segrt build model.onnx -o model.plan [...]``."""
    parser.add_argument("onnx", help="ONNX model exported by `segrt export`")
    parser.add_argument("-o", "--output", help="plan to write (.plan or .engine; default: next to the ONNX file)")
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    parser.add_argument("--int8", action="store_true", help="allow INT8 kernels (needs --calib; with --fp16: mixed)")
    parser.add_argument("--calib", metavar="DIR", help="folder of images for INT8 calibration (at the OPT shape)")
    parser.add_argument("--calib-images", type=int, default=512, metavar="N", help="use at most N images")
    parser.add_argument("--shapes", metavar="MIN,OPT,MAX",
                        help=f"input shape profile, BxCxHxW each (default: the model's input size, else "
                             f"{DEFAULT_SHAPES})")
    parser.add_argument("--workspace", type=float, default=4.0, metavar="GB", help="builder workspace (GiB)")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--timing-cache", metavar="FILE",
                       help=f"timing cache to read and update (default: <output>{TIMING_CACHE_SUFFIX})")
    cache.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    parser.add_argument("--verbose", action="store_true", help="verbose TensorRT log")
    return parser


def run_build(args: argparse.Namespace) -> int:
    """``segrt build``: validate ``args`` (ValueError with the reason), build, print the plan path."""
    validate_options(args.fp16, args.int8, args.calib, args.workspace)
    if args.calib_images is not None and args.calib_images < 1:
        raise ValueError(f"--calib-images must be >= 1, got {args.calib_images}")
    shapes = parse_shapes(args.shapes) if args.shapes else None
    output = Path(args.output) if args.output else Path(args.onnx).with_suffix(".plan")
    timing = False if getattr(args, "no_timing_cache", False) else (args.timing_cache or True)
    plan = build_engine(args.onnx, output, fp16=args.fp16, int8=args.int8, calib_dir=args.calib, shapes=shapes,
                        workspace_gb=args.workspace, timing_cache=timing,
                        calib_images=args.calib_images, verbose=args.verbose)
    print(plan)
    return 0
