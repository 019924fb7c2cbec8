from vecstore.cli import main

raise SystemExit(main())
