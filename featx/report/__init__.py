"""What runs leave behind for people: run folders and tables (``runs``), metrics, the leaderboard,
figures (``plots``, ``projection_plots``) and the interactive HTML view (``html``). No torch, no h5py."""
