"""A run's folder and its records: named only when complete, its report page, the table of
runs and their leaderboard scores."""
