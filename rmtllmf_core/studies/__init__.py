"""The studies tier: many runs as one Work (work, ray_backend) and what is made of them: sweeps, the
leaderboard, the defense arena, the paper report, the story, the calibration, and their figures (plots)."""
