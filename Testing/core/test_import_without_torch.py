"""The parts the Slicer module imports at start-up load without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_errors_and_progress_import_without_torch():
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import BSAFusionCore
        from BSAFusionCore.errors import InputError
        from BSAFusionCore.progress import report
        from BSAFusionCore.options import MODALITIES
        from BSAFusionCore.model_info import registration_summary
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        try:
            BSAFusionCore.load_model
        except ImportError:
            print("lazy")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "lazy"
