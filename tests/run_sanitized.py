"""pytest with msgf._C replaced by a sanitized build of the extension (`make sanitize`).

    python tests/run_sanitized.py BUILD/_C.cpython-*.so [pytest arguments]

The module is loaded from the given file and registered as msgf._C before anything imports
it, so the tests run the instrumented kernels while the rest of msgf comes from the source
tree. The ASan runtime must already be loaded (LD_PRELOAD): Python itself is not built with it.
Run pytest with --capture=sys so that a sanitizer's report, written to file descriptor 2
just before it aborts the process, reaches the terminal instead of pytest's capture file.
"""
import importlib.util
import sys

import pytest


def main(argv: list[str]) -> int:
    if not argv or not argv[0].endswith(".so"):
        raise SystemExit("usage: run_sanitized.py BUILD/_C.<abi>.so [pytest arguments]")
    with open("/proc/self/maps") as maps:
        if "libasan" not in maps.read():
            raise SystemExit("the ASan runtime is not loaded: run with LD_PRELOAD=$(gcc -print-file-name=libasan.so)")
    spec = importlib.util.spec_from_file_location("msgf._C", argv[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import msgf

    sys.modules["msgf._C"] = msgf._C = module
    print(f"msgf._C from {argv[0]} (sanitized build, ISA {module.cpu_isa})", flush=True)
    return pytest.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
