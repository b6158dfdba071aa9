"""On-phone check material: an ExecuTorch BundledProgram (``.bpte``) holding the ``.pte`` program, PCM
chunks and the float torch prefix's embeddings for them. ExecuTorch's bundled-program runner on the phone
loads it, runs every test case and compares with ``atol`` (recorded here: twice the largest absolute error
this machine's runtime showed, so a phone that computes like this runtime passes and one that does not fails).

After writing, the file is loaded back through ExecuTorch's own bundled-program loader and every test case
is executed and verified here, in the real runtime.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toolkit.files import atomic_write_bytes


def write_bundled_program(pte: Path, out: Path, chunks: list[np.ndarray], expected: list[np.ndarray],
                          atol: float) -> dict:
    # ExecuTorch's devtools: a heavy import, needed only when a bundle is written
    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer
    cases = [MethodTestCase(inputs=[torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32))],
                            expected_outputs=[torch.from_numpy(np.ascontiguousarray(e, dtype=np.float32))])
             for c, e in zip(chunks, expected)]
    bundle = BundledProgram(None, [MethodTestSuite(method_name="forward", test_cases=cases)],
                            pte_file_path=str(pte))
    data = serialize_from_bundled_program_to_flatbuffer(bundle)
    atomic_write_bytes(out, data)
    return {"file": out.name, "size_bytes": len(data), "test_cases": len(cases), "method": "forward",
            "expected": "float torch prefix embeddings", "atol": atol, "rtol": 0.0,
            "verified_here": verify_bundled_program(out, len(cases), atol)}


def verify_bundled_program(path: Path, cases: int, atol: float) -> dict:
    """Load the .bpte with ExecuTorch's bundled loader, run each test case, compare with its expected output."""
    # ExecuTorch's bundled-program loader: a heavy import, needed only here
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program
    from executorch.extension.pybindings import portable_lib as et
    data = Path(path).read_bytes()
    schema = deserialize_from_flatbuffer_to_bundled_program(data)
    held = sum(len(s.test_cases) for s in schema.method_test_suites)
    bundled = et._load_bundled_program_from_buffer(data)
    passed, errors = 0, []
    for i in range(held):
        try:
            bundled.verify_result_with_bundled_expected_output("forward", i, rtol=0.0, atol=atol)
            passed += 1
        except Exception as exc:  # the runtime reports a mismatch as an exception
            errors.append(f"case {i}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return {"test_cases_held": held, "expected_cases": cases, "cases_passed": passed,
            "status": "ok" if held == cases and passed == held else "failed", "errors": errors[:3]}
