"""`python -m bench [flags]`: the benchmark (see bench/README.md); `python -m bench
profile [flags]`: where Greenlight spends a request's time, in-process under cProfile;
`python -m bench visibility [flags]`: bench/visibility.py's table alone."""

import sys

command = sys.argv[1] if len(sys.argv) > 1 else None
if command == "profile":
    from bench.profile import main
elif command == "visibility":
    from bench.visibility import main
else:
    from bench.run import main

raise SystemExit(main(sys.argv[2:] if command in ("profile", "visibility") else sys.argv[1:]))
