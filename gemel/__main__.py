from gemel.cli.main import main

raise SystemExit(main())
