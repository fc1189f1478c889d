from rootfs_forge.cli import main

raise SystemExit(main())
