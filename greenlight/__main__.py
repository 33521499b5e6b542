from greenlight.cli import main

raise SystemExit(main())
