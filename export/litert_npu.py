"""Ahead-of-time NPU compilation of a LiteRT flatbuffer, through the official ``ai_edge_litert.aot`` API.

``aot_compile(model, target=qualcomm.Target(SocModel.SM8650))`` runs LiteRT's ``apply_plugin_main`` with the
vendor's compiler plugin: the plugin's partitioner selects the ops the NPU supports ("Partitioned subgraph<0>,
selected N ops, from a total of M ops. resulted in P partitions"), the vendor SDK compiles each partition, and
the result is a ``.tflite`` whose partitions are ``DISPATCH_OP`` custom ops holding the vendor's compiled
binary; ops left outside stay ordinary TFLite ops and run on the CPU. That placement is what the manifest
records (:func:`placement`).

**The vendor SDK.** The compiler plugin ships in ``ai-edge-litert``; the SDK it links against (Qualcomm: QAIRT,
``libQnnHtp.so`` and friends for x86_64 Linux) does not. Its official package, ``ai-edge-litert-sdk-qualcomm``,
is a small sdist that downloads QAIRT from Qualcomm's site while it builds. Where that site cannot be reached
the build prints an error and pip still reports "Successfully installed", with no SDK inside, and pip caches
that empty build: reinstall with ``--no-cache-dir``. An unpacked QAIRT can be named by ``QNN_SDK_ROOT`` (the
variable QAIRT's own ``envsetup.sh`` sets) instead. Without either, :func:`find_sdk` raises
:class:`MissingNpuSdk`, one line saying what to install.

**What runs where.** The NPU computes float ops in fp16 (the HTP has no fp32 arithmetic), the in-graph
log-mel frontend included, unless the plugin leaves an op on the CPU. Executing the artifact needs the phone:
the vendor's dispatch library (``libLiteRtDispatch_Qualcomm.so``) and the NPU exist only there, so
:func:`load` raises :class:`NeedsDevice` on this machine.
"""
from __future__ import annotations

import mmap
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from export.errors import ConversionFailed, MissingNpuSdk, NeedsDevice

DISPATCH_OP = "DISPATCH_OP"


@dataclass(frozen=True)
class NpuVendor:
    """One NPU vendor of ``ai_edge_litert.aot``: its target, its SDK and how to get it."""
    name: str                  # the recipe suffix and ai_edge_litert.aot's vendor module: "qualcomm"
    label: str                 # "Qualcomm"
    socs: tuple[str, ...]      # the SoC models its aot target accepts (ai_edge_litert 2.3)
    npu: str                   # what executes the partitions: "Hexagon NPU (HTP)"
    sdk: str                   # the SDK the compiler plugin links against
    sdk_version: str           # the version ai-edge-litert 2.3 was built against
    sdk_package: str           # the official PyPI package that downloads it
    sdk_module: str
    sdk_root_env: str          # an unpacked SDK named by this variable works too
    sdk_lib_dir: str           # below the SDK root: the x86_64 Linux host libraries
    sdk_probe: str             # a library the compiler plugin cannot load without

    @property
    def install_line(self) -> str:
        return (f"pip install --no-cache-dir {self.sdk_package}=={_litert_version()} (it downloads {self.sdk} "
                f"{self.sdk_version} from {self.label}'s site at install time; without --no-cache-dir pip reuses a "
                f"cached empty build), or set {self.sdk_root_env} to an unpacked {self.sdk} {self.sdk_version}")


QUALCOMM = NpuVendor(
    name="qualcomm", label="Qualcomm",
    socs=("SA8255", "SA8295", "SM8350", "SM8450", "SM8475", "SM8550", "SM8650", "SM8750", "SM8845", "SM8850"),
    npu="Hexagon NPU (HTP)", sdk="QAIRT", sdk_version="2.50.0.260828", sdk_package="ai-edge-litert-sdk-qualcomm",
    sdk_module="ai_edge_litert_sdk_qualcomm", sdk_root_env="QNN_SDK_ROOT", sdk_lib_dir="lib/x86_64-linux-clang",
    sdk_probe="libQnnHtp.so")


def _litert_version() -> str:
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "?"


@dataclass(frozen=True)
class SdkLocation:
    libs: Path        # the directory holding the host libraries
    source: str       # how it was found: the package, or the environment variable
    version: str      # the SDK's own version where it says, else what its package was built for


def _sdk_version_at(root: Path, libs: Path, vendor: NpuVendor) -> str:
    """QAIRT's ``sdk.yaml`` names its version (``version: 2.50.0.260828``); without it, the build id compiled
    into the probe library (``v2.51.0.260929181845`` in ``libQnnHtp.so``); else "unknown"."""
    try:
        m = re.search(r"^\s*version:\s*['\"]?([\w.\-]+)", (root / "sdk.yaml").read_text(), re.M)
        if m:
            return m.group(1)
    except OSError:
        pass
    try:
        with open(libs / vendor.sdk_probe, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            m = re.search(rb"\bv(2\.\d+\.\d+\.\d+)\b", data)
            build = m.group(1).decode() if m else None
    except (OSError, ValueError):
        return "unknown"
    return f"{build} (build id in {vendor.sdk_probe})" if build else "unknown"


def find_sdk(vendor: NpuVendor, recipe: str) -> SdkLocation:
    """Where the vendor SDK's host libraries are: ``$QNN_SDK_ROOT`` (an unpacked SDK) first, then the official
    package. :class:`MissingNpuSdk` (one line: what to install) when neither holds them."""
    root = os.environ.get(vendor.sdk_root_env)
    if root:
        libs = Path(root) / vendor.sdk_lib_dir
        if not (libs / vendor.sdk_probe).is_file():
            raise MissingNpuSdk("litert", recipe, f"{vendor.sdk_root_env}={root} holds no {vendor.sdk_lib_dir}/"
                                                  f"{vendor.sdk_probe} (expected an unpacked {vendor.sdk} "
                                                  f"{vendor.sdk_version})")
        return SdkLocation(libs, f"${vendor.sdk_root_env}={root}", _sdk_version_at(Path(root), libs, vendor))
    try:
        package = __import__(vendor.sdk_module)
    except ImportError:
        raise MissingNpuSdk("litert", recipe, f"the {vendor.label} NPU compiler needs the {vendor.sdk} SDK, which is "
                                              f"not installed: {vendor.install_line}") from None
    sdk_root = package.get_sdk_path()
    libs = package.path_to_sdk_libs()
    if sdk_root is None or libs is None or not (Path(libs) / vendor.sdk_probe).is_file():
        raise MissingNpuSdk("litert", recipe, f"{vendor.sdk_package} is installed but holds no {vendor.sdk} "
                                              f"(its download from {vendor.label}'s site failed at install time): "
                                              f"{vendor.install_line}")
    version = f"{_sdk_version_at(Path(sdk_root), Path(libs), vendor)} ({vendor.sdk_package} " \
              f"{metadata.version(vendor.sdk_package)})"
    return SdkLocation(Path(libs), vendor.sdk_package, version)


@contextmanager
def _library_path(libs: Path):
    """``apply_plugin`` runs the compiler with LD_LIBRARY_PATH = its own folders + the caller's: put the SDK's."""
    before = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), before]))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


@dataclass
class CompiledForNpu:
    """What an NPU recipe returns to the LiteRT backend: the graph the compiler was given (``source``, checked
    like any LiteRT recipe's output) and the compiled flatbuffer that ships, with the compiler's facts."""
    source: bytes
    compiled: bytes
    details: dict = field(default_factory=dict)


def op_census(model: bytes) -> dict[str, int]:
    """``{op name: count}`` over every subgraph of a flatbuffer, read from its schema (no interpreter: a
    compiled model's DISPATCH_OP cannot be prepared off the phone). Custom ops count under their custom code."""
    from ai_edge_litert import schema_py_generated as schema
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    m = schema.Model.GetRootAsModel(model, 0)
    census: dict[str, int] = {}
    for g in range(m.SubgraphsLength()):
        sub = m.Subgraphs(g)
        for i in range(sub.OperatorsLength()):
            code = m.OperatorCodes(sub.Operators(i).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = code.CustomCode().decode() if code.CustomCode() else names.get(builtin, str(builtin))
            census[name] = census.get(name, 0) + 1
    return dict(sorted(census.items()))


def partition_stats_from_log(text: str):
    """The compiler's own report (``apply_plugin_main`` output) -> ``aot_types.PartitionStats``, parsed with
    the expression ``ai_edge_litert.aot`` itself uses; for recorded compiler output."""
    from ai_edge_litert.aot.core import aot_types
    from ai_edge_litert.aot.core.apply_plugin import _RE_PARTITION_STATS  # the library's parser of this log
    return aot_types.PartitionStats(subgraph_stats=[
        aot_types.SubgraphPartitionStats(subgraph_index=int(s[0]), num_ops_offloaded=int(s[1]),
                                         num_total_ops=int(s[2]), num_partitions_offloaded=int(s[3]))
        for s in _RE_PARTITION_STATS.findall(text)])


def placement(stats, compiled_ops: dict[str, int]) -> dict:
    """What runs where, from the compiler's partition report (``PartitionStats``) and the compiled model's op
    census: ops the NPU took, ops left to the CPU, partitions, per subgraph and in all."""
    subgraphs = [{"subgraph": s.subgraph_index, "ops_total": s.num_total_ops, "ops_on_npu": s.num_ops_offloaded,
                  "ops_on_cpu": s.num_total_ops - s.num_ops_offloaded, "partitions": s.num_partitions_offloaded}
                 for s in stats.subgraph_stats]
    if not subgraphs:
        raise ValueError("the compiler reported no partitioned subgraph")
    total = {k: sum(s[k] for s in subgraphs) for k in ("ops_total", "ops_on_npu", "ops_on_cpu", "partitions")}
    cpu_ops = {name: n for name, n in compiled_ops.items() if name != DISPATCH_OP}
    return {**total, "subgraphs": subgraphs, "dispatch_ops": compiled_ops.get(DISPATCH_OP, 0), "cpu_ops": cpu_ops,
            "fully_on_npu": total["ops_on_cpu"] == 0 and not cpu_ops}


def compile_for_npu(model: bytes, vendor: NpuVendor, soc: str, recipe: str, source_recipe: str) -> CompiledForNpu:
    """Compile the flatbuffer ``model`` (the output of LiteRT recipe ``source_recipe``) for ``soc`` with
    ``ai_edge_litert.aot.aot_compile``; :class:`MissingNpuSdk` without the SDK, :class:`ConversionFailed`
    naming the compiler's last error line when it fails or places nothing on the NPU."""
    sdk = find_sdk(vendor, recipe)
    from ai_edge_litert.aot import aot_compile as aot
    from ai_edge_litert.aot.core import aot_types
    from ai_edge_litert.aot.vendors import import_vendor
    target_module = __import__(f"ai_edge_litert.aot.vendors.{vendor.name}.target", fromlist=["Target"])
    import_vendor.import_vendor(vendor.name)
    with tempfile.TemporaryDirectory(prefix="veil-npu-") as tmp, _library_path(sdk.libs):
        result = aot.aot_compile(aot_types.Model.create_from_bytes(model), output_dir=tmp,
                                 target=target_module.Target(target_module.SocModel(soc)), keep_going=True)
        if result.failed_backends or not result.models_with_backend:
            reason = result.failed_backends[0][1] if result.failed_backends else "no compiled model"
            raise ConversionFailed("litert", recipe, f"{vendor.label} {soc} compile failed: "
                                                     f"{_compiler_error(reason)}")
        _, compiled_model = result.models_with_backend[0]
        compiled = Path(compiled_model.path).read_bytes()
        report = result.compilation_report()
    where = placement(compiled_model.partition_stats, op_census(compiled))
    if where["ops_on_npu"] == 0:
        raise ConversionFailed("litert", recipe, f"the {vendor.label} {soc} compiler placed no op on the NPU "
                                                 f"(0 of {where['ops_total']})")
    return CompiledForNpu(model, compiled, {
        "vendor": vendor.label, "soc": soc, "npu": vendor.npu, "source_recipe": source_recipe,
        "source_ops": op_census(model), "placement": where,
        "sdk": {"name": vendor.sdk, "version": sdk.version, "found": sdk.source,
                "expected_by_litert": vendor.sdk_version},
        "compiler": {"api": "ai_edge_litert.aot.aot_compile", "plugin": f"libLiteRtCompilerPlugin_{vendor.label}.so",
                     "ai_edge_litert": _litert_version(), "report": [ln for ln in report.splitlines() if ln.strip()]},
        "float_compute": "fp16 on the NPU (float ops of the source graph, the log-mel frontend included)"})


def _compiler_error(reason: str) -> str:
    """``apply_plugin failed ... See /tmp/x.error`` -> the last error line of that log, when it can be read."""
    m = re.search(r"See (\S+\.error)", reason)
    if not m:
        return reason
    try:
        lines = [ln.strip() for ln in Path(m.group(1)).read_text(errors="replace").splitlines()]
    except OSError:
        return reason
    errors = [ln for ln in lines if ln.startswith(("ERROR", "└")) or "Failed" in ln]
    return f"{errors[-1][:240] if errors else reason} (log: {m.group(1)})"


def check_runs_here(what: str, details: dict) -> None:
    """An NPU artifact executes only where the vendor's dispatch library and the NPU are: on the phone."""
    raise NeedsDevice(what, f"the {details.get('npu', 'NPU')} of a {details.get('vendor', '')} "
                            f"{details.get('soc', '')} phone (LiteRT CompiledModel with the NPU accelerator)")
