"""Everything after accumulation, usable without the runner: post-processing, BumpNet names,
ROOT files, manifest.json and plots."""
