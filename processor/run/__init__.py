"""What runner.py does: the CLI (the only exit codes), its modes, execution on Dask or in
process, finishing a run, merging, run directories and submit.sh's planning step."""
