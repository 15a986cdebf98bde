"""Write tests/data/onnx_backend_excluded.tsv: the ONNX backend-suite cases, among those made of op
types graphc imports, that graphc's importer refuses, with the reason it states.

Only refusals ("… is not supported by graphc: <reason>") are listed; a case that imports but then
fails to compile or computes a wrong answer stays in the suite, where it fails. A case whose
weights, shapes or axes are graph inputs is judged with its first data set's values bound, as the
backend binds them at run time (``test_onnx_backend_suite.refusal``). Run after the importer learns
an op or a form:  python tools/onnx_backend_exclusions.py
"""

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
warnings.simplefilter("ignore")  # the suite's case generators warn about their own overflow tests



def main() -> None:
    from test_onnx_backend_suite import cases, refusal

    rows = [(name, reason) for name in sorted(cases()) if (reason := refusal(name)) is not None]
    out = ROOT / "tests" / "data" / "onnx_backend_excluded.tsv"
    out.write_text("# ONNX backend-suite cases graphc's importer refuses, with its reason (tools/onnx_backend_exclusions.py writes this;"
                   " tests/test_onnx_backend_suite.py checks each)\n" + "".join(f"{n}\t{r}\n" for n, r in rows))
    print(f"{len(rows)} cases excluded → {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
